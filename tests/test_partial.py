"""darknet's `partial` (pretrained starts such as yolov4-tiny.conv.29) and `stopbackward` freezing."""
from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

import darknet_py as dn

from helpers import write_arch_cfg, write_random_weights

HEADER_BYTES = 3 * 4 + 8  # major, minor, revision (int32) and seen (uint64)
PARAMETERS = ("biases", "scales", "rolling_mean", "rolling_variance", "weights")


def stored_floats(net: dn.Network, layers: int) -> int:
    """How many floats darknet stores for the first `layers` layers of `net`."""
    total = 0
    for layer in net.layers[:layers]:
        if layer.type == "convolutional":
            per_filter = (layer.input_shape[0] // layer.groups) * layer.size * layer.size + 1
            total += layer.filters * (per_filter + (3 if layer.batch_normalize else 0))
    return total


def test_partial_file_is_the_first_layers_with_seen_zero(tmp_path):
    cfg = write_arch_cfg(tmp_path, "yolov4-tiny", width=160, height=160)
    weights = write_random_weights(cfg, tmp_path / "full.weights")
    with dn.Network(cfg, weights) as net:
        net.set_seen(123_456)
        net.save_weights(tmp_path / "full.weights")
        count = stored_floats(net, 29)
    out = dn.partial(cfg, weights, tmp_path / "yolov4-tiny.conv.29", 29)
    full, part = (tmp_path / "full.weights").read_bytes(), out.read_bytes()
    assert struct.unpack("<3iQ", full[:HEADER_BYTES]) == (0, 2, 5, 123_456)
    assert struct.unpack("<3iQ", part[:HEADER_BYTES]) == (0, 2, 5, 0)
    assert len(part) == HEADER_BYTES + 4 * count
    assert part[HEADER_BYTES:] == full[HEADER_BYTES:len(part)]  # the parameters exactly as stored


def test_partial_loads_into_a_cfg_with_other_classes(tmp_path):
    """As darknet: the layers the file holds load, the class-dependent heads keep their init."""
    two = write_arch_cfg(tmp_path, "yolov4-tiny", classes=2, width=160, height=160)
    five = write_arch_cfg(tmp_path, "yolov4-tiny", classes=5, width=160, height=160)
    weights = write_random_weights(two, tmp_path / "two.weights")
    cut = dn.partial(two, weights, tmp_path / "two.conv.29", 29)
    with dn.Network(two, weights) as source, dn.Network(five, cut, seed=7) as target, \
            dn.Network(five, seed=7) as fresh:
        loaded_convs = [layer.index for layer in source.layers[:29] if layer.type == "convolutional"]
        assert target.layers_loaded == len(loaded_convs) and target.seen == 0
        for index in loaded_convs:
            for kind in PARAMETERS:
                np.testing.assert_array_equal(target.get_parameter(index, kind), source.get_parameter(index, kind))
        heads = [layer.index for layer in target.layers[29:] if layer.type == "convolutional"]
        assert target.layers[29].filters == (5 + 5) * 3  # a head shaped for the new classes
        for index in heads:
            np.testing.assert_array_equal(target.get_parameter(index, "weights"), fresh.get_parameter(index, "weights"))
        blob = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
        assert all(np.isfinite(o).all() for o in target.forward(blob))


def test_partial_bad_layer_counts(tmp_path):
    cfg = write_arch_cfg(tmp_path, "yolov3-tiny", width=160, height=160)
    with dn.Network(cfg) as net:
        for layers in (-1, len(net.layers) + 1, 2.5, True):
            with pytest.raises(dn.ShapeError, match="layers must be an integer"):
                net.save_weights(tmp_path / "p.weights", layers=layers)
        net.save_weights(tmp_path / "none.weights", layers=0)
    assert (tmp_path / "none.weights").stat().st_size == HEADER_BYTES
    assert not (tmp_path / "p.weights").exists()


def test_cli_partial(tmp_path):
    cfg = write_arch_cfg(tmp_path, "yolov4-tiny", width=160, height=160)
    weights = write_random_weights(cfg, tmp_path / "w.weights")
    cli = [sys.executable, "-m", "darknet_py.cli", "partial", str(cfg), str(weights)]
    done = subprocess.run(cli + [str(tmp_path / "w.conv.29"), "29"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "w.conv.29" in done.stdout
    with dn.Network(cfg, weights) as net:
        assert (tmp_path / "w.conv.29").stat().st_size == HEADER_BYTES + 4 * stored_floats(net, 29)
    done = subprocess.run(cli + [str(tmp_path / "x.weights"), "99"], capture_output=True, text=True)
    assert done.returncode == 1 and "layers must be an integer in [0, 38]" in done.stderr
    assert not (tmp_path / "x.weights").exists()


def test_stopbackward_keeps_the_frozen_layers_bit_identical_for_n_iterations(tmp_path):
    """stopbackward=3 on layer 26: iterations 0-2 change nothing in layers 0-26 (no gradient,
    no weight decay, no momentum step) while the layers above learn; iteration 3 updates all."""
    cfg = write_arch_cfg(tmp_path, "yolov4-tiny", width=96, height=96, stopbackward=3)
    weights = write_random_weights(cfg, tmp_path / "w.weights")
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 96, 96), dtype=np.float32)
    truths = np.zeros((2, 4, 5), np.float32)
    truths[:, 0] = [0.5, 0.5, 0.3, 0.4, 1]
    truths[:, 1] = [0.3, 0.6, 0.1, 0.1, 0]
    with dn.Network(cfg, weights, batch=2) as net:
        convs = [layer.index for layer in net.layers if layer.type == "convolutional"]
        frozen = [i for i in convs if i <= 26]
        learning = [i for i in convs if i > 26]
        assert net.layers[26].stopbackward == 3

        def snapshot() -> dict:
            return {(i, kind): net.get_parameter(i, kind) for i in convs for kind in ("weights", "biases", "scales")
                    if kind != "scales" or net.layers[i].batch_normalize}

        before = snapshot()
        for iteration in range(4):
            net.train_step(images, truths, iteration)
            net.update(learning_rate=0.01, momentum=0.9, decay=0.0005, batch_images=2)
            now = snapshot()
            changed = {i for (i, _), value in now.items() if not np.array_equal(value, before[(i, _)])}
            if iteration < 3:
                assert not changed & set(frozen), f"iteration {iteration}: frozen layers changed"
                assert set(learning) <= changed
            else:
                assert set(frozen) <= changed  # the freeze is over


def test_train_from_a_partial_file_keeps_the_frozen_backbone_until_stopbackward(tmp_path):
    """train() with stopbackward=100 on the last backbone conv, started from a partial file: its
    `_last.weights` at iteration 100 holds the partial file's backbone bit for bit, the layers
    above it learnt; 20 iterations later the backbone has moved too."""
    dn.crowdhuman.synthesize(tmp_path / "src", train=8, val=2, seed=0, width_range=(64, 128))
    summary = dn.crowdhuman.prepare(tmp_path / "src", tmp_path / "ds", 64, 64, min_size=2, progress=False)
    recipe = dict(classes=2, width=64, height=64, batch=4, subdivisions=1, learning_rate=0.001, burn_in=2,
                  mosaic=False)
    source = dn.cfg.write_cfg(tmp_path / "source.cfg", "yolov4-tiny", max_batches=10, steps=(8, 9), **recipe)
    trained = dn.train(summary.data_file, source, backup_dir=tmp_path / "b0", seed=1, progress=False)
    cut = dn.partial(source, trained.final_weights, tmp_path / "source.conv.27", 27)
    frozen_cfg = dn.cfg.write_cfg(tmp_path / "frozen.cfg", "yolov4-tiny", max_batches=120, steps=(110, 115),
                                  stopbackward=100, **recipe)
    kept = {}

    def keep(p: dn.TrainProgress) -> None:
        if p.iteration == 100:
            kept[100] = (tmp_path / "b1" / "frozen_last.weights").read_bytes()

    result = dn.train(summary.data_file, frozen_cfg, cut, backup_dir=tmp_path / "b1", seed=2, progress=False,
                      callback=keep)
    (tmp_path / "at100.weights").write_bytes(kept[100])
    with dn.Network(frozen_cfg, cut) as start, dn.Network(frozen_cfg, tmp_path / "at100.weights") as at_100, \
            dn.Network(frozen_cfg, result.final_weights) as at_120:
        assert at_100.seen == 100 * 4 and at_100.layers[26].stopbackward == 100
        backbone = [layer.index for layer in start.layers[:27] if layer.type == "convolutional"]
        above = [layer.index for layer in start.layers[27:] if layer.type == "convolutional"]
        for index in backbone:
            for kind in ("weights", "biases", "scales"):
                np.testing.assert_array_equal(at_100.get_parameter(index, kind), start.get_parameter(index, kind))
        assert all(not np.array_equal(at_100.get_parameter(i, "weights"), start.get_parameter(i, "weights"))
                   for i in above)
        assert all(not np.array_equal(at_120.get_parameter(i, "weights"), start.get_parameter(i, "weights"))
                   for i in backbone)
