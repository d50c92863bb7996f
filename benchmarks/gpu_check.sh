#!/usr/bin/env bash
# One-shot check of the CUDA build on a GPU machine: compiles the CUDA extension into a
# temporary directory (never into src/), runs tests/gpu against it and prints yolov4-416
# forward/training images per second (benchmarks/gpu_speed.py).
#
#   benchmarks/gpu_check.sh            # DARKNET_PY_CUDA_ARCH defaults to this GPU's capability
#
# Python: $PYTHON (default python3) when it has cffi, numpy, opencv, scipy-openblas32, pytest
# and the nvidia-cublas / nvidia-cuda-runtime wheels (works offline); otherwise a venv in
# $VENV (default /tmp/darknet_py_gpu_venv) is made with pip (needs the network).
set -euo pipefail
cd "$(dirname "$0")/.."
began=$(date +%s)

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader

PYTHON=${PYTHON:-python3}
ready() {  # the Python packages and a cuBLAS to link (wheels or the toolkit)
    "$1" - <<'PY' 2>/dev/null
import glob, os, sys
import cffi, numpy, cv2, scipy_openblas32, pytest, pycocotools, setuptools
sys.path.insert(0, os.getcwd())
import build_ext
nvcc, home = build_ext.find_nvcc()
_, libs = build_ext.wheel_cuda_dirs(build_ext.nvcc_major(nvcc))
sys.exit(0 if libs or glob.glob(os.path.join(home, "lib64", "libcublas.so*")) else 1)
PY
}
if ! ready "$PYTHON"; then
    VENV=${VENV:-/tmp/darknet_py_gpu_venv}
    echo "== installing the build and test dependencies into $VENV"
    "$PYTHON" -m venv "$VENV"
    PYTHON="$VENV/bin/python"
    "$PYTHON" -m pip install --quiet --upgrade pip
    "$PYTHON" -m pip install --quiet cffi numpy "opencv-python-headless>=4.5,<5" scipy-openblas32 setuptools wheel \
        pytest pycocotools "nvidia-cublas>=13" "nvidia-cuda-runtime>=13"
fi

if [ -z "${DARKNET_PY_CUDA_ARCH:-}" ]; then  # this GPU only: one architecture compiles fastest
    DARKNET_PY_CUDA_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '. ')
fi
export DARKNET_PY_CUDA_ARCH

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "== building the CUDA extension for sm_${DARKNET_PY_CUDA_ARCH} in $WORK"
"$PYTHON" - "$WORK" <<'PY'
import os, shutil, sys
sys.path.insert(0, os.getcwd())
import build_ext
work = sys.argv[1]
built = build_ext.make_builder(absolute_paths=True, gpu=True, cuda_objdir=os.path.join(work, "cuda")).compile(
    tmpdir=os.path.join(work, "cffi"))
package = os.path.join(work, "pkg", "darknet_py")
shutil.copytree("src/darknet_py", package, ignore=shutil.ignore_patterns("_darknet_engine*", "__pycache__"))
shutil.copy(built, package)
print(built)
PY
export PYTHONPATH="$WORK/pkg"
"$PYTHON" -c 'import darknet_py as dn; from darknet_py._engine import lib; from darknet_py.network import gpu_count; assert lib.dn_gpu_built(); print("CUDA devices:", gpu_count())'

echo "== tests/gpu"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/gpu

echo "== speed (yolov4-416)"
"$PYTHON" benchmarks/gpu_speed.py --size 416 --batches 1,64 --repeats 3

echo "== done in $(( $(date +%s) - began )) s"
