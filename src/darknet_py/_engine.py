"""Loads the compiled engine and turns its status codes into exceptions."""
from __future__ import annotations

import ctypes
import os

from .errors import CfgError, DarknetError, DarknetIOError, ShapeError, StateError, WeightsError


def _preload_blas() -> None:
    # The extension links libscipy_openblas.so with an rpath that only works when
    # both packages sit in one site-packages; loading it here by absolute path
    # makes editable installs and unusual layouts work as well. A wheel repaired by
    # auditwheel carries its own copy in darknet_py.libs/ (found through its rpath):
    # preloading the other copy globally would shadow it.
    bundled = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "darknet_py.libs")
    if os.path.isdir(bundled):
        return
    try:
        import scipy_openblas32
    except ImportError:
        return
    path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def _preload_cuda() -> bool:
    # A CUDA build links libcudart/libcublas from the nvidia-* wheels with rpaths for the usual
    # layouts; when those miss (an unusual site-packages), load them by absolute path instead.
    # Only tried after a failed import, so a CPU build never maps the CUDA libraries.
    import glob
    import sys

    loaded = False
    for entry in sys.path:
        root = os.path.join(entry or ".", "nvidia")
        if not os.path.isdir(root):
            continue
        for name in ("libcudart.so*", "libcublasLt.so*", "libcublas.so*"):
            for pattern in (os.path.join(root, "cu*", "lib", name), os.path.join(root, "*", "lib", name)):
                for path in sorted(glob.glob(pattern))[:1]:
                    try:
                        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                        loaded = True
                    except OSError:
                        pass
    return loaded


def _preload_onednn() -> bool:
    # A oneDNN build links libdnnl.so.3 from the onednn-cpu-gomp wheel, which installs it into the
    # environment's lib/ (found through the rpath from site-packages); an editable install or an
    # unusual layout finds it here instead. Only tried after a failed import.
    from importlib import metadata

    try:
        files = metadata.distribution("onednn-cpu-gomp").files or []
    except metadata.PackageNotFoundError:
        return False
    for f in files:
        if str(f).endswith("libdnnl.so.3"):
            try:
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                return False
    return False


_preload_blas()
# When a parallel loop ends, the engine's OpenMP threads spin for GOMP_SPINCOUNT rounds (some tens
# of microseconds) and then sleep. The next loop of the same pass starts within that time, so it
# finds them awake (waking sleeping threads is what made a batch-1 yolov4-tiny 4-15 % slower with
# OMP_WAIT_POLICY=PASSIVE); the data-loading threads of train() (and the rest of the process)
# still get the CPU as soon as the engine stops, not after libgomp's default 300,000 rounds. A
# setting of the user's own (either variable) is kept; it must be made before libgomp loads,
# which is now.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    os.environ["GOMP_SPINCOUNT"] = "20000"

try:
    from ._darknet_engine import ffi, lib  # noqa: E402
except ImportError as exc:  # pragma: no cover - only without a build
    if (("libcu" in str(exc)) and _preload_cuda()) or (("libdnnl" in str(exc)) and _preload_onednn()):
        from ._darknet_engine import ffi, lib  # noqa: E402
    else:
        raise ImportError(
            "darknet_py's compiled engine is missing or cannot load; install the package with "
            "`pip install .` (or `python build_ext.py` in a source checkout)"
            + (" and, for the CUDA build, `pip install \"darknet_py[cuda]\"`" if "libcu" in str(exc) else "")
            + (" and, for the oneDNN build, `pip install \"darknet_py[onednn]\"`" if "libdnnl" in str(exc) else "")
        ) from exc

_STATUS_ERRORS = {
    lib.DN_ERR_IO: DarknetIOError,
    lib.DN_ERR_CFG: CfgError,
    lib.DN_ERR_WEIGHTS: WeightsError,
    lib.DN_ERR_ARGUMENT: ShapeError,
    lib.DN_ERR_MEMORY: MemoryError,
    lib.DN_ERR_STATE: StateError,
}


def check(status: int) -> None:
    """Raise the exception matching a dn_status, with the engine's message."""
    if status == lib.DN_OK:
        return
    message = ffi.string(lib.dn_last_error()).decode("utf-8", "replace")
    error = _STATUS_ERRORS.get(status, DarknetError)
    raise error(message or f"darknet engine error {status}")


def as_float_buffer(array):
    """A cffi float* view of a C-contiguous float32 numpy array (no copy)."""
    return ffi.cast("float *", ffi.from_buffer(array))
