"""Shared test helpers: cfgs written by the project's own builder, random weights."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import darknet_py as dn
from darknet_py import cfg as cfg_builder

# tests/opencv5 runs only where OpenCV 5 is installed (.ci/opencv5_check.sh makes such a venv);
# the main environment keeps OpenCV 4 for the comparisons with its darknet importer.
if int(cv2.__version__.split(".")[0]) < 5:
    collect_ignore = ["opencv5"]


def write_arch_cfg(directory: Path, arch: str, *, classes: int = 2, width: int = 416, height: int = 416,
                   **options) -> Path:
    """A cfg of `arch` written by darknet_py.cfg into `directory`."""
    path = directory / f"{arch}-{classes}c-{width}x{height}.cfg"
    cfg_builder.write_cfg(path, arch, classes=classes, width=width, height=height, **options)
    return path


def write_random_weights(cfg_path: Path, weights_path: Path, seed: int = 1) -> Path:
    """Weights with darknet's random init plus random biases and batch-norm statistics, so that
    every stored array matters in a forward comparison."""
    rng = np.random.default_rng(seed)
    with dn.Network(cfg_path, seed=seed) as net:
        for layer in net.layers:
            if layer.type != "convolutional":
                continue
            n = layer.filters
            net.set_parameter(layer.index, "biases", rng.normal(0, 0.1, n))
            if layer.batch_normalize:
                net.set_parameter(layer.index, "scales", rng.uniform(0.5, 1.5, n))
                net.set_parameter(layer.index, "rolling_mean", rng.normal(0, 0.1, n))
                net.set_parameter(layer.index, "rolling_variance", rng.uniform(0.5, 2.0, n))
        net.save_weights(weights_path)
    return weights_path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


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
    by the slow tests that need a detector which really detects."""
    import io

    from darknet_py.demo import DemoConfig, run_demo

    return run_demo(DemoConfig(out_dir=tmp_path_factory.mktemp("demo")), progress=False, out=io.StringIO())
