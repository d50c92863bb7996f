"""Why a GPU can or cannot be used (any build, no GPU needed): the engine's mapping from the CUDA
runtime's answers to a status and a sentence, gpu=0 / gpu="auto" in this build, and the CUDA
build's requirements (build_backend/darknet_py_backend.py, setup.py)."""
from __future__ import annotations

import importlib.metadata
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import darknet_py as dn
from darknet_py import network
from darknet_py._engine import ffi, lib

ROOT = Path(__file__).resolve().parents[1]


def explain(error: int, message, driver: int, runtime: int, count: int) -> tuple[int, str]:
    buf = ffi.new("char[]", 512)
    code = lib.dn_gpu_explain(error, message or ffi.NULL, driver, runtime, count, buf, len(buf))
    return code, ffi.string(buf).decode()


@pytest.mark.parametrize("error, driver, count, code, words", [
    # libcuda.so.1 missing: cudaDriverGetVersion says 0 whatever cudaGetDeviceCount answered
    (35, 0, 0, lib.DN_GPU_NO_DRIVER, ["no NVIDIA driver", "libcuda.so.1", "runtime is 13.0"]),
    (100, 0, 0, lib.DN_GPU_NO_DRIVER, ["no NVIDIA driver"]),
    # a CUDA 12.2 driver under the CUDA 13 runtime
    (35, 12020, 0, lib.DN_GPU_DRIVER_TOO_OLD, ["driver is too old", "supports CUDA 12.2", "runtime is 13.0",
                                               "update the driver"]),
    (36, 13000, 0, lib.DN_GPU_DRIVER_TOO_OLD, ["driver is too old"]),   # cudaErrorCallRequiresNewerDriver
    (999, 12080, 0, lib.DN_GPU_DRIVER_TOO_OLD, ["supports CUDA 12.8"]),  # any error with an older major
    (100, 13000, 0, lib.DN_GPU_NO_DEVICE, ["no CUDA device", "driver (CUDA 13.0) found none"]),
    (0, 13000, 0, lib.DN_GPU_NO_DEVICE, ["no CUDA device"]),
    (803, 13000, 0, lib.DN_GPU_CUDA_ERROR, ["cannot use the GPU", "cudaErrorSystemDriverMismatch"]),
    (0, 13010, 1, lib.DN_GPU_READY, ["1 CUDA device (driver CUDA 13.1, runtime CUDA 13.0)"]),
    (0, 13000, 4, lib.DN_GPU_READY, ["4 CUDA devices"]),
])
def test_status_mapping(error, driver, count, code, words):
    message = b"cudaErrorSystemDriverMismatch (system has unsupported display driver / cuda driver combination)"
    got_code, text = explain(error, message if error == 803 else None, driver, 13000, count)
    assert got_code == code, text
    for word in words:
        assert word in text


def test_status_buffer_is_bounded_and_optional():
    small = ffi.new("char[]", 8)
    assert lib.dn_gpu_explain(0, ffi.NULL, 13000, 13000, 1, small, 8) == lib.DN_GPU_READY
    assert ffi.string(small) == b"1 CUDA "  # truncated, NUL-terminated
    assert lib.dn_gpu_explain(0, ffi.NULL, 13000, 13000, 1, ffi.NULL, 0) == lib.DN_GPU_READY
    assert lib.dn_gpu_status(ffi.NULL, 0) in (lib.DN_GPU_READY, lib.DN_GPU_NOT_BUILT, lib.DN_GPU_NO_DRIVER,
                                              lib.DN_GPU_DRIVER_TOO_OLD, lib.DN_GPU_NO_DEVICE, lib.DN_GPU_CUDA_ERROR)


@pytest.fixture
def tiny_cfg(tmp_path):
    from darknet_py import cfg as cfg_builder

    path = tmp_path / "tiny.cfg"
    cfg_builder.write_cfg(path, "yolov4-tiny", classes=2, width=64, height=64)
    return path


@pytest.mark.skipif(bool(lib.dn_gpu_built()), reason="a CUDA build (tests/test_cuda_build.py covers it)")
def test_cpu_build_says_so(tiny_cfg):
    assert network.gpu_status() == "darknet_py was built without CUDA (rebuild with DARKNET_PY_GPU=1)"
    assert not dn.gpu_available() and dn.gpu_count() == 0
    with pytest.raises(dn.StateError, match="not built with CUDA .*DARKNET_PY_GPU=1"):
        dn.Network(tiny_cfg, gpu=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = dn.Network(tiny_cfg, gpu="auto")
    messages = [str(w.message) for w in caught if issubclass(w.category, dn.DarknetWarning)]
    assert messages == ["gpu='auto': darknet_py was built without CUDA (rebuild with DARKNET_PY_GPU=1); "
                        "running on the CPU"]
    with net:
        assert net.gpu is None
        assert len(net.forward(np.zeros((1, 3, 64, 64), np.float32))) == 2


@pytest.mark.skipif(bool(lib.dn_gpu_built()), reason="a CUDA build depends on the nvidia wheels")
def test_cpu_build_does_not_depend_on_the_nvidia_wheels():
    try:
        requires = importlib.metadata.requires("darknet_py") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("darknet_py is not installed (only on sys.path)")
    unconditional = [r for r in requires if "extra ==" not in r]
    assert unconditional and not [r for r in unconditional if r.startswith("nvidia-")], requires


def test_cuda_requirements_are_the_cuda_extra(monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    sys.path.insert(0, str(ROOT / "build_backend"))
    try:
        import darknet_py_backend as backend
    finally:
        sys.path.remove(str(ROOT / "build_backend"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "darknet_py_backend"
    assert project["project"]["optional-dependencies"]["cuda"] == backend.CUDA_REQUIRES
    monkeypatch.setenv("DARKNET_PY_GPU", "0")
    assert backend.cuda_requires() == []
    monkeypatch.setenv("DARKNET_PY_GPU", "1")
    assert backend.cuda_requires() == ["nvidia-cublas>=13", "nvidia-cuda-runtime>=13"]
