"""darknet_py's PEP 517 build backend: setuptools' own, plus the CUDA wheels for a CUDA build
and the oneDNN wheels for a oneDNN build.

pyproject.toml names this module (`backend-path = ["build_backend"]`). Every hook is
setuptools.build_meta's; only the "what else must the build environment hold" hooks differ:
with DARKNET_PY_GPU=1 (the CUDA build, see build_ext.py) they add the nvidia-cublas and
nvidia-cuda-runtime wheels, whose headers and libraries the extension is compiled and linked
against. So `DARKNET_PY_GPU=1 pip install .` works in build isolation, with nothing installed
by hand. (The same wheels become run-time dependencies of a CUDA build: setup.py.)
DARKNET_PY_ONEDNN=1 likewise adds onednn-cpu-gomp (libdnnl) and onednn-devel-cpu-gomp (its
headers); the library is a run-time dependency of that build.

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


#: What a oneDNN build (DARKNET_PY_ONEDNN=1) compiles against (headers) and links (libdnnl); the
#: library is the "onednn" extra in pyproject.toml and a run-time dependency of such a build.
ONEDNN_RUNTIME = ["onednn-cpu-gomp==2023.2.0"]
ONEDNN_BUILD = ONEDNN_RUNTIME + ["onednn-devel-cpu-gomp==2023.2.0"]


def onednn_requested() -> bool:
    """DARKNET_PY_ONEDNN set to anything but "" or "0" (the same test as build_ext.py's)."""
    return os.environ.get("DARKNET_PY_ONEDNN", "0").strip() not in ("", "0")


def onednn_requires(build: bool) -> list[str]:
    if not onednn_requested():
        return []
    return list(ONEDNN_BUILD if build else ONEDNN_RUNTIME)


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + cuda_requires() + onednn_requires(True)


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + cuda_requires() + onednn_requires(True)
