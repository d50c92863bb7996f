import os
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "build_backend")]
from build_ext import cuda_build_ext  # noqa: E402  (the cffi builder beside this file)
from darknet_py_backend import cuda_requires, onednn_requires  # noqa: E402

# Everything declarative lives in pyproject.toml; this file hooks in the cffi builder and
# declares the run-time dependencies, which setuptools cannot express in TOML.

#: What every build needs at run time (pyproject.toml marks `dependencies` dynamic).
DEPENDENCIES = [
    "cffi>=1.16",
    "numpy>=1.23",
    "opencv-python-headless>=4.5",
    "scipy-openblas32>=0.3.27",
    "tqdm>=4.60",  # progress bars that fit terminals, notebooks (widgets) and logs
]

options = {}
# cffi compiles the engine against Python's limited API (the module is _darknet_engine.abi3.so)
# except on debug and free-threaded interpreters; tag the wheel to match, cp39-abi3, so that
# one wheel per platform serves every CPython >= 3.9 (requires-python).
if (sys.implementation.name == "cpython" and not hasattr(sys, "gettotalrefcount")
        and not sysconfig.get_config_var("Py_GIL_DISABLED")):
    options["bdist_wheel"] = {"py_limited_api": "cp39"}

# A CUDA build (DARKNET_PY_GPU=1) loads cuBLAS and the CUDA runtime from the nvidia-* wheels it
# was linked against, so its wheel depends on them; a CPU build's does not.
# The CUDA objects are compiled by the build_ext command, not when setup.py is loaded.
# A oneDNN build (DARKNET_PY_ONEDNN=1) depends on the onednn-cpu-gomp wheel (libdnnl) the same way.
setup(cffi_modules=["build_ext.py:ffibuilder"], cmdclass={"build_ext": cuda_build_ext(build_ext)},
      install_requires=DEPENDENCIES + cuda_requires() + onednn_requires(False), options=options)
