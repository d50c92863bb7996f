"""The CUDA build as a new user makes it: `DARKNET_PY_GPU=1 pip install .` in a fresh virtual
environment, nothing installed by hand and build isolation on (pip puts the nvidia-cublas and
nvidia-cuda-runtime wheels into the build environment: build_backend/darknet_py_backend.py), for
one architecture, from a copy of the tree; then a CPU `pip install .` and a CUDA `pip install -e .`
of the same copy. No GPU
needed: each install is imported from that venv, where a machine without a driver or device must
say the build has CUDA, refuse gpu=0 with a StateError naming the reason, and run gpu="auto" on
the CPU with one DarknetWarning. Downloads about 450 MB of nvidia wheels (pip caches them) and
compiles the kernels (about a minute on 2 cores). Skipped only where nvcc is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCH = "80"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"),
                       reason="nvcc is not installed (no CUDA toolkit: CUDA_HOME unset and no nvcc on PATH)"),
]

KERNELS = {"activation_kernels", "im2col_kernels", "convolutional_kernels", "maxpool_kernels", "route_kernels",
           "shortcut_kernels", "upsample_kernels", "yolo_kernels", "blas_kernels"}


def copy_tree(dest: Path) -> Path:
    """The files git would ship (tracked and not ignored), as package_check.sh copies them:
    no build outputs, no venv, no compiled extension."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=False)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): everything but outputs
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.so", "*.o", "__pycache__", "*.egg-info", "_darknet_engine.c"))
        return dest
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def clean_env(**extra: str) -> dict:
    """The environment a new user's shell would have: no pip settings that change isolation or
    the target, no PYTHONPATH pointing into this checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_NO_BUILD_ISOLATION", "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "VIRTUAL_ENV"))
           and k not in ("PYTHONPATH", "PYTHONHOME", "DARKNET_PY_GPU", "DARKNET_PY_CUDA_ARCH")}
    env.update(extra)
    return env


def pip_install(python: Path, *args: str, gpu: bool, cwd: Path) -> float:
    env = clean_env(**({"DARKNET_PY_GPU": "1", "DARKNET_PY_CUDA_ARCH": ARCH} if gpu else {}))
    began = time.monotonic()
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=1500)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    return time.monotonic() - began


PROBE = r"""
import importlib.metadata, json, sys, warnings
import numpy as np
import darknet_py as dn
from darknet_py import network
from darknet_py._engine import lib
report = {"module": dn.__file__, "built": lib.dn_gpu_built(), "available": dn.gpu_available(), "count": dn.gpu_count(),
          "status": network.gpu_status(), "state": lib.dn_gpu_status(network.ffi.NULL, 0),
          "requires": importlib.metadata.requires("darknet_py")}
from darknet_py import _darknet_engine
report["extension"] = _darknet_engine.__file__
cfg = sys.argv[1]
if not report["available"]:
    try:
        dn.Network(cfg, gpu=0)
    except dn.StateError as exc:
        report["gpu0"] = str(exc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = dn.Network(cfg, gpu="auto")
    report["auto_warnings"] = [str(w.message) for w in caught if issubclass(w.category, dn.DarknetWarning)]
    with net:
        report["auto_device"] = net.gpu
        outs = net.forward(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
        report["auto_outputs"] = [list(o.shape) for o in outs]
print("REPORT " + json.dumps(report))
"""


def probe(python: Path, cfg: Path, cwd: Path) -> dict:
    done = subprocess.run([str(python), "-c", textwrap.dedent(PROBE), str(cfg)], capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def check_gpu_install(report: dict) -> None:
    assert report["built"] == 1, report
    unconditional = [r for r in report["requires"] if "extra ==" not in r]
    assert "nvidia-cublas>=13" in unconditional and "nvidia-cuda-runtime>=13" in unconditional, report["requires"]
    if report["available"]:  # a machine with a GPU: tests/gpu checks the rest there
        assert report["state"] == 0 and "CUDA device" in report["status"]
        return
    # no driver, driver too old, no device ...: the same reason in all three places
    reason = report["status"]
    assert report["state"] in (2, 3, 4, 5) and reason, report
    assert report["gpu0"] == f"no usable CUDA device: {reason}", report
    assert report["auto_warnings"] == [f"gpu='auto': {reason}; running on the CPU"], report
    assert report["auto_device"] is None and len(report["auto_outputs"]) == 2, report


def check_extension(extension: Path) -> None:
    dynamic = subprocess.run(["readelf", "-d", str(extension)], capture_output=True, text=True).stdout
    assert "libcublas.so" in dynamic and "libcudart.so" in dynamic, dynamic
    assert "pip-build-env-" not in dynamic  # no rpath into pip's deleted build environment
    resolved = subprocess.run(["ldd", str(extension)], capture_output=True, text=True).stdout
    missing = [line for line in resolved.splitlines() if "not found" in line]
    assert not missing, resolved  # the $ORIGIN rpaths find the installed nvidia wheels
    symbols = subprocess.run(["nm", str(extension)], capture_output=True, text=True).stdout
    for name in ("dn_im2col_gpu", "dn_bn_forward_train_gpu", "dn_yolo_forward_gpu", "dn_sgd_gpu", "dn_gpu_forward"):
        assert name in symbols
    if shutil.which("cuobjdump"):
        listing = subprocess.run(["cuobjdump", "--list-elf", str(extension)], capture_output=True, text=True).stdout
        assert f"sm_{ARCH}" in listing and not [l for l in listing.splitlines() if "sm_" in l and f"sm_{ARCH}" not in l]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A copy of the tree and a fresh venv (the interpreter's own pip; nothing else installed)."""
    work = tmp_path_factory.mktemp("cuda_install")
    tree = copy_tree(work / "darknet_py")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import write_arch_cfg

    cfg = write_arch_cfg(work, "yolov4-tiny", width=64, height=64)
    return work, tree, venv / "bin" / "python", cfg


def test_pip_install_in_a_fresh_venv(fresh):
    """`DARKNET_PY_GPU=1 pip install .`, then a CPU `pip install .` of the same tree, which must
    really rebuild (build/config.txt: setuptools would keep the CUDA extension in build/, no
    source having changed) and drop the nvidia requirements."""
    work, tree, python, cfg = fresh
    seconds = pip_install(python, str(tree), gpu=True, cwd=work)
    print(f"DARKNET_PY_GPU=1 pip install . (fresh venv, sm_{ARCH}): {seconds:.0f} s")
    report = probe(python, cfg, cwd=work)
    assert "site-packages" in report["extension"], report
    check_gpu_install(report)
    check_extension(Path(report["extension"]))
    assert KERNELS <= {p.stem for p in (tree / "build" / "cuda").glob("*.o")}

    pip_install(python, str(tree), gpu=False, cwd=work)
    report = probe(python, cfg, cwd=work)
    assert report["built"] == 0 and report["state"] == 1, report  # DN_GPU_NOT_BUILT
    assert not [r for r in report["requires"] if r.startswith("nvidia-") and "extra ==" not in r], report


def test_editable_install(fresh):
    """`DARKNET_PY_GPU=1 pip install -e .`: the extension lands in src/darknet_py/ and finds
    its CUDA libraries in the venv's nvidia wheels (_engine.py's preload: no rpath leads there)."""
    work, tree, python, cfg = fresh
    seconds = pip_install(python, "-e", str(tree), gpu=True, cwd=work)
    print(f"DARKNET_PY_GPU=1 pip install -e . (same venv): {seconds:.0f} s")
    report = probe(python, cfg, cwd=work)
    assert Path(report["extension"]).parent == tree / "src" / "darknet_py", report
    check_gpu_install(report)
