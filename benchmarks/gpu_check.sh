#!/usr/bin/env bash
# One prepared check of the CUDA build on a machine with an NVIDIA GPU: builds and installs
# darknet_py with CUDA into a fresh venv, runs tests/gpu (every figure the GPU issue asks for,
# printed under "GPU figures") and measures yolov4-416 speed (benchmarks/gpu_speed.py). Sized to
# finish in under 8 minutes on one H100/H200-class GPU with 16 cores, build included (each
# stage prints its own time, the log its total).
#
#   benchmarks/gpu_check.sh [OUT_DIR]     # log: OUT_DIR/gpu_check.log (default $OUT, else build/gpu_check)
#
# Online (the default): a fresh venv and `DARKNET_PY_GPU=1 pip install ".[test]"`, the README's
# one command, in build isolation (downloads about 500 MB of wheels).
# Offline (GPU_CHECK_WHEELS=DIR, for a machine without a network): the venv also sees $PYTHON's
# own packages (it must have nvidia-cublas and nvidia-cuda-runtime >= 13, numpy, opencv and
# pytest), the wheels in DIR are installed into it (cffi, pycparser, scipy-openblas32 and
# setuptools>=77, e.g. fetched elsewhere with `pip download --only-binary=:all: --no-deps -d DIR
# cffi pycparser scipy-openblas32 "setuptools>=77"`), and the build runs without isolation.
#
# Settings: DARKNET_PY_CUDA_ARCH (default: this GPU's compute capability, else 90: one
# architecture compiles fastest), DARKNET_PY_JOBS (parallel nvcc, default one per core),
# PYTHON (default python3), KEEP_WORK=1 keeps the temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$ROOT/build/gpu_check}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
PYTHON="${PYTHON:-python3}"
START=$SECONDS
STAGE=$SECONDS
stage() { printf '\n== gpu_check [%3ds] %s\n' "$((SECONDS - START))" "$*"; STAGE=$SECONDS; }
took() { printf '== (%s: %d s)\n' "$1" "$((SECONDS - STAGE))"; }
fail() { echo "gpu_check: FAILED: $*"; exit 1; }

stage "GPU"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver on this machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ' || true)"
export DARKNET_PY_CUDA_ARCH="${DARKNET_PY_CUDA_ARCH:-${CAP:-90}}"
export DARKNET_PY_JOBS="${DARKNET_PY_JOBS:-$(nproc)}"
command -v nvcc >/dev/null || [[ -n "${CUDA_HOME:-}" ]] || fail "nvcc not found: set CUDA_HOME or put nvcc on PATH"
echo "nvcc: $(command -v nvcc || echo "$CUDA_HOME/bin/nvcc"), $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || true)"
echo "cores: $(nproc); DARKNET_PY_CUDA_ARCH=$DARKNET_PY_CUDA_ARCH DARKNET_PY_JOBS=$DARKNET_PY_JOBS; python: $("$PYTHON" -V 2>&1)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/darknet_py_gpu.XXXXXX")"
if [[ "${KEEP_WORK:-0}" == 1 ]]; then trap 'echo "gpu_check: work directory kept: $WORK"' EXIT
else trap 'rm -rf "$WORK"' EXIT; fi

stage "copy of the tree (no build outputs) in $WORK/src"
mkdir "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
        xargs -0 cp -a --parents -t "$WORK/src")
else
    (cd "$ROOT" && tar --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.so' \
        --exclude='*.o' -cf - .) | tar -xf - -C "$WORK/src"
fi

VENV="$WORK/venv"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -z "${GPU_CHECK_WHEELS:-}" ]]; then
    stage "build and install: DARKNET_PY_GPU=1 pip install \".[test]\" (fresh venv, build isolation)"
    (cd "$WORK/src" && DARKNET_PY_GPU=1 "$PY" -m pip install --quiet ".[test]")
else
    stage "build and install offline: wheels from $GPU_CHECK_WHEELS, the rest from $PYTHON's environment"
    # the venv sees the packages of $PYTHON's environment after its own (a .pth of directories)
    "$PYTHON" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' \
        >"$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_gpu_check_base.pth"
    shopt -s nullglob
    wheels=("$GPU_CHECK_WHEELS"/*.whl)
    shopt -u nullglob
    [[ ${#wheels[@]} -gt 0 ]] && "$PY" -m pip install --quiet --no-index --no-deps "${wheels[@]}"
    (cd "$WORK/src" && DARKNET_PY_GPU=1 "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation .)
fi
took "build and install"

stage "the installed build"
cd "$WORK"  # import darknet_py from the venv, not from a source tree
"$PY" - <<'PY' || fail "the CUDA build does not see a usable GPU (above)"
import sys
import darknet_py as dn
from darknet_py import network
from darknet_py._engine import lib
print("darknet_py:", dn.__file__)
print("CUDA build:", bool(lib.dn_gpu_built()), "| status:", network.gpu_status())
sys.exit(0 if lib.dn_gpu_built() and dn.gpu_available() else 1)
PY

status=0
stage "tests/gpu (forward vs CPU, training step vs CPU, demo on the GPU, memory over 50 cycles, two threads)"
(cd "$WORK/src" && timeout "${GPU_CHECK_TEST_TIMEOUT:-420}" "$PY" -m pytest -q -p no:cacheprovider -rfEs \
    --durations=8 tests/gpu) || status=$?
took "tests/gpu"

stage "speed: yolov4-416 images/s (forward at batch 1 and 64, one training iteration at batch 64)"
timeout "${GPU_CHECK_SPEED_TIMEOUT:-240}" "$PY" "$WORK/src/benchmarks/gpu_speed.py" --size 416 --batches 1,64 \
    --train-batches 64 --repeats 3 || status=$?
took "speed"

total=$((SECONDS - START))
stage "done in $total s$([[ $total -gt 480 ]] && echo ' (over the 8-minute budget)'), exit status $status; log: $LOG"
exit "$status"
