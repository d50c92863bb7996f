"""Shared test helpers: cfgs written by the project's own builder, random weights."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from helpers import write_arch_cfg, write_random_weights

# tests/opencv5 runs only where OpenCV 5 is installed (.ci/opencv5_check.sh makes such a venv);
# the main environment keeps OpenCV 4 for the comparisons with its darknet importer.
if int(cv2.__version__.split(".")[0]) < 5:
    collect_ignore = ["opencv5"]


@pytest.fixture(scope="session")
def arch_files(tmp_path_factory):
    """(cfg, weights) per (arch, width, height), built once per test session."""
    directory = tmp_path_factory.mktemp("arch")
    cache: dict[tuple, tuple[Path, Path]] = {}

    def get(arch: str, width: int = 416, height: int = 416, classes: int = 2) -> tuple[Path, Path]:
        key = (arch, width, height, classes)
        if key not in cache:
            cfg = write_arch_cfg(directory, arch, classes=classes, width=width, height=height)
            weights = write_random_weights(cfg, cfg.with_suffix(".weights"))
            cache[key] = (cfg, weights)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory):
    """The demo's recipe trained from random weights (several CPU minutes): a DemoResult. Shared
    by the slow tests that need a detector which really detects.

    With DARKNET_PY_TEST_DEMO_DIR set (CI does, for one run), the demo is trained into that
    directory and its result pickled there, and a later test session (another build of the same
    tree: .ci/onednn_check.sh) loads it instead of training again: training is the same code,
    bit for bit, in every CPU build."""
    import io
    import os
    import pickle

    from darknet_py.demo import DemoConfig, run_demo

    shared = os.environ.get("DARKNET_PY_TEST_DEMO_DIR")
    if not shared:
        return run_demo(DemoConfig(out_dir=tmp_path_factory.mktemp("demo")), progress=False, out=io.StringIO())
    saved = Path(shared) / "result.pickle"
    if saved.exists():
        with saved.open("rb") as f:
            return pickle.load(f)
    result = run_demo(DemoConfig(out_dir=Path(shared) / "demo"), progress=False, out=io.StringIO())
    with (Path(shared) / "result.pickle.tmp").open("wb") as f:
        pickle.dump(result, f)
    os.replace(Path(shared) / "result.pickle.tmp", saved)
    return result
