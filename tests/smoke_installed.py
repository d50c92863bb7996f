"""Smoke test of an installed darknet_py (a wheel or an sdist build), run by .ci/package_check.sh.

    python tests/smoke_installed.py

Run it with the interpreter of the environment under test, from outside the source tree. It
checks that the package and its compiled engine come from that environment's site-packages (not
from a checkout), that a real network built from a built-in cfg runs a forward pass with the
expected output shapes and finite, deterministic values, and that the `darknet-py` command runs.
Not named test_*.py: pytest must not collect it (it tests an installation, not the tree).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[1]


def site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]).resolve(), Path(paths["platlib"]).resolve()})


def check_installed_location() -> None:
    import darknet_py
    from darknet_py import _darknet_engine

    sites = site_dirs()
    for what, file in (("package", darknet_py.__file__), ("extension", _darknet_engine.__file__)):
        path = Path(file).resolve()
        assert any(site in path.parents for site in sites), f"{what} {path} is not in site-packages {sites}"
        assert SOURCE_TREE not in path.parents, f"{what} {path} comes from the source tree {SOURCE_TREE}"
    assert darknet_py.__version__ == metadata.version("darknet_py"), (
        darknet_py.__version__, metadata.version("darknet_py"))
    print(f"darknet_py {darknet_py.__version__}: extension {_darknet_engine.__file__}")


def check_blas_loaded() -> None:
    # The CPU build links the 32-bit-integer OpenBLAS of scipy-openblas32: libscipy_openblas.so,
    # or the copy auditwheel bundles as darknet_py.libs/libscipy_openblas-<hash>.so (numpy's own
    # libscipy_openblas64_ does not count). An engine built without it is not the one meant.
    import darknet_py  # noqa: F401 - loads the engine

    pattern = re.compile(r"/libscipy_openblas(-[0-9a-f]+)?\.so$")
    with open("/proc/self/maps", encoding="utf-8") as maps:
        loaded = {line.split()[-1] for line in maps if pattern.search(line.rstrip())}
    assert loaded, "no scipy-openblas32 library is mapped after importing darknet_py"
    bundled = Path(darknet_py.__file__).resolve().parent.parent / "darknet_py.libs"
    if bundled.is_dir():  # a repaired wheel: its own copy, and only that one, serves the engine
        assert all(Path(p).parent == bundled for p in loaded), f"a second OpenBLAS beside {bundled}: {loaded}"
    print("OpenBLAS:", ", ".join(sorted(loaded)))


def check_forward() -> None:
    import numpy as np

    import darknet_py as dn

    with tempfile.TemporaryDirectory(prefix="darknet_py_smoke_") as tmp:
        cfg = dn.cfg.write_cfg(Path(tmp) / "yolov4-tiny-2c-160.cfg", "yolov4-tiny", classes=2, width=160,
                               height=160)
        blob = np.random.default_rng(0).random((2, 3, 160, 160), dtype=np.float32)
        blob[1] = blob[0]
        with dn.Network(cfg, batch=2, seed=0) as net:
            assert (net.channels, net.height, net.width, net.classes) == (3, 160, 160, 2)
            outputs = net.forward(blob)
            again = net.forward(blob)
        with dn.Network(cfg, batch=2, seed=0) as fresh:
            other = fresh.forward(blob)
    # yolov4-tiny: two [yolo] layers, strides 32 and 16, 3 masks * (5 + 2 classes) channels each
    shapes = [o.shape for o in outputs]
    assert shapes == [(2, 21, 5, 5), (2, 21, 10, 10)], shapes
    for out, out2, out3 in zip(outputs, again, other):
        assert out.dtype == np.float32
        assert np.isfinite(out).all(), "non-finite values in the forward output"
        assert float(np.abs(out).max()) > 0, "an all-zero output"
        np.testing.assert_array_equal(out, out2)      # the same network, the same input
        np.testing.assert_array_equal(out, out3)      # the same seed, the same random weights
        np.testing.assert_array_equal(out[0], out[1])  # two equal images in one batch
        rows = out.reshape(2, 3, 7, *out.shape[2:])
        logistic = rows[:, :, [0, 1, 4, 5, 6]]       # x, y, objectness, class scores
        assert (logistic >= 0).all() and (logistic <= 1).all(), "activated outputs outside [0, 1]"
    print("forward:", shapes)


def check_cli() -> None:
    scripts = Path(sysconfig.get_path("scripts"))
    command = scripts / "darknet-py"
    assert command.is_file(), f"{command} is not installed"
    for argv in ([str(command), "--help"], [str(command), "detector", "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              cwd=tempfile.gettempdir(), env={**os.environ, "PYTHONPATH": ""})
        assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        assert "usage:" in done.stdout, done.stdout
    print(f"{command} --help: exit 0")


def main() -> int:
    check_installed_location()
    check_blas_loaded()
    check_forward()
    check_cli()
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
