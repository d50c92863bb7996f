"""Fuzz target: the .weights loader, fuzzed bytes against a fixed cfg (batch-normalised and plain
convolutions, groups, a [yolo] head); a file that loads must also give a forward pass."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import darknet_py as dn  # noqa: E402

NAME = "weights"
CFG = """[net]
width=16
height=16
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky
[convolutional]
filters=4
size=1
groups=2
activation=mish
[convolutional]
filters=7
size=1
activation=linear
[yolo]
mask=0
anchors=3,3
classes=2
num=1
"""
_net = None


def network() -> dn.Network:
    global _net
    if _net is None:
        _net = dn.Network(_harness.scratch_file("fixed.cfg", CFG.encode()), seed=5)
    return _net


def one_input(data: bytes) -> None:
    net = network()
    path = _harness.scratch_file("fuzz.weights", data)
    try:
        loaded = net.load_weights(path)
    except dn.DarknetError:
        return
    assert 0 <= loaded <= 3
    assert net.seen >= 0
    net.forward(np.full((1, 3, 16, 16), 0.5, np.float32))


def seeds() -> list[bytes]:
    net = network()
    saved = net.save_weights(_harness.scratch_file("seed.weights", b""))
    full = saved.read_bytes()
    header_old = struct.pack("<iiii", 0, 1, 0, 12345) + full[20:]  # 32-bit seen
    return [full, full[:20], full[:20 + 4 * 16], full[:-4], header_old, full + b"\0" * 8]


if __name__ == "__main__":
    _harness.main(sys.modules[__name__])
