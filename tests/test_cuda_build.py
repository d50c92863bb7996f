"""The CUDA build compiles and links (no GPU needed): nvcc for one architecture into a temporary
directory, never into src/. Skipped only where nvcc (or the cuBLAS / cudart wheels) is missing.

Beyond linking, the extension is imported in a subprocess from a temporary copy of the package:
without a GPU driver it must say it was built with CUDA, report no device, refuse gpu=0 with
StateError and fall back to the CPU with a warning for gpu="auto".
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import build_ext  # noqa: E402

pytestmark = pytest.mark.skipif(
    shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"), reason="nvcc is not installed"
)


def _needs_wheels() -> None:
    try:
        nvcc, home = build_ext.find_nvcc()
    except SystemExit as exc:
        pytest.skip(str(exc))
    _, libs = build_ext.wheel_cuda_dirs(build_ext.nvcc_major(nvcc))
    toolkit = Path(home) / "lib64"
    if not libs and not list(toolkit.glob("libcublas.so*")):
        pytest.skip("no cuBLAS: pip install 'darknet_py[cuda]' (nvidia-cublas, nvidia-cuda-runtime)")


@pytest.fixture(scope="module")
def gpu_extension(tmp_path_factory) -> Path:
    _needs_wheels()
    tmp = tmp_path_factory.mktemp("cuda_build")
    ffi = build_ext.make_builder(absolute_paths=True, gpu=True, cuda_arch="80", cuda_objdir=str(tmp / "cuda"))
    cwd = os.getcwd()
    try:
        built = Path(ffi.compile(tmpdir=str(tmp / "cffi"), verbose=False))
    finally:
        os.chdir(cwd)  # cffi's compile changes directory
    assert built.is_file() and tmp in built.parents
    return built


def _symbols(path: Path, *options: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *options, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def test_objects_are_for_the_requested_arch(gpu_extension: Path):
    objects = sorted((gpu_extension.parents[2] / "cuda").glob("*.o"))
    names = {o.stem for o in objects}
    assert {"activation_kernels", "im2col_kernels", "convolutional_kernels", "maxpool_kernels", "route_kernels",
            "shortcut_kernels", "upsample_kernels", "yolo_kernels", "blas_kernels"} <= names
    if shutil.which("cuobjdump"):
        listing = subprocess.run(["cuobjdump", "--list-elf", str(objects[0])], capture_output=True, text=True).stdout
        assert "sm_80" in listing


def test_links_against_cudart_and_cublas(gpu_extension: Path):
    undefined = _symbols(gpu_extension, "--undefined-only")
    assert {"cublasSgemm_v2", "cublasCreate_v2", "cudaMalloc", "cudaMemcpyAsync", "__cudaRegisterFatBinary"} <= undefined
    if shutil.which("readelf"):
        dynamic = subprocess.run(["readelf", "-d", str(gpu_extension)], capture_output=True, text=True).stdout
        assert "libcublas.so" in dynamic and "libcudart.so" in dynamic
    if shutil.which("ldd"):
        resolved = subprocess.run(["ldd", str(gpu_extension)], capture_output=True, text=True).stdout
        missing = [line for line in resolved.splitlines() if "not found" in line and "cu" in line]
        assert not missing, missing  # the rpaths find the CUDA libraries


def test_kernels_are_in_the_extension(gpu_extension: Path):
    out = subprocess.run(["nm", str(gpu_extension)], capture_output=True, text=True, check=True).stdout
    for name in ("dn_im2col_gpu", "dn_bn_forward_train_gpu", "dn_yolo_forward_gpu", "dn_sgd_gpu", "dn_gpu_forward",
                 "dn_network_use_gpu"):
        assert name in out


PROBE = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
import darknet_py as dn
from darknet_py import network
from darknet_py._engine import lib
assert lib.dn_gpu_built() == 1
print("count", network.gpu_count(), "available", network.gpu_available())
if network.gpu_available():  # a machine with a GPU: nothing more to check here (tests/gpu does)
    sys.exit(0)
cfg = sys.argv[2]
try:
    dn.Network(cfg, gpu=0)
except dn.StateError as exc:
    print("StateError:", exc)
else:
    raise SystemExit("gpu=0 without a device did not raise")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    net = dn.Network(cfg, gpu="auto")
assert net.gpu is None and any("running on the CPU" in str(w.message) for w in caught), caught
import numpy as np
assert len(net.forward(np.zeros((1, 3, net.height, net.width), np.float32))) == 2
print("ok")
"""


def test_gpu_build_imports_and_degrades_without_a_device(gpu_extension: Path, tmp_path: Path):
    package = tmp_path / "pkg" / "darknet_py"
    shutil.copytree(ROOT / "src" / "darknet_py", package,
                    ignore=shutil.ignore_patterns("_darknet_engine*", "__pycache__"))
    shutil.copy(gpu_extension, package / gpu_extension.name)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_arch_cfg

    cfg = write_arch_cfg(tmp_path, "yolov4-tiny", width=64, height=64)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE), str(tmp_path / "pkg"), str(cfg)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "count" in done.stdout
    if "count 0" in done.stdout:
        assert "StateError: no usable CUDA device" in done.stdout and done.stdout.rstrip().endswith("ok"), done.stdout
