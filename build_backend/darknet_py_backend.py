"""darknet_py's PEP 517 build backend: setuptools' own, plus the CUDA wheels for a CUDA build.

pyproject.toml names this module (`backend-path = ["build_backend"]`). Every hook is
setuptools.build_meta's; only the "what else must the build environment hold" hooks differ:
with DARKNET_PY_GPU=1 (the CUDA build, see build_ext.py) they add the nvidia-cublas and
nvidia-cuda-runtime wheels, whose headers and libraries the extension is compiled and linked
against. So `DARKNET_PY_GPU=1 pip install .` works in build isolation, with nothing installed
by hand. (The same wheels become run-time dependencies of a CUDA build: setup.py.)

nvcc itself is not a wheel here: it comes from a CUDA toolkit (CUDA_HOME or PATH).
"""
from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 - every other hook is setuptools'

#: What a CUDA build compiles and links against, and needs at run time (cuBLAS, cudart).
#: The same list is the "cuda" extra in pyproject.toml (tests/test_cuda_build.py checks).
CUDA_REQUIRES = ["nvidia-cublas>=13", "nvidia-cuda-runtime>=13"]


def gpu_requested() -> bool:
    """DARKNET_PY_GPU set to anything but "" or "0" (the same test as build_ext.py's)."""
    return os.environ.get("DARKNET_PY_GPU", "0").strip() not in ("", "0")


def cuda_requires() -> list[str]:
    return list(CUDA_REQUIRES) if gpu_requested() else []


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + cuda_requires()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + cuda_requires()
