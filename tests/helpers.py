"""Test helpers shared by the test modules (`from helpers import ...`; a module of its own
because tests/gpu has a conftest.py too, and two conftest modules cannot both be imported by name)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder


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
