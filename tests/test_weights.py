"""darknet .weights: byte-exact round trips, partial files, both header versions."""
from __future__ import annotations

import numpy as np
import pytest

import darknet_py as dn

HEADER_BYTES = 3 * 4 + 8  # version 0.2.5 and a 64-bit `seen`


def conv_params(net: dn.Network, layer: dn.LayerInfo) -> list[np.ndarray]:
    kinds = ["biases", "scales", "rolling_mean", "rolling_variance", "weights"] if layer.batch_normalize \
        else ["biases", "weights"]
    return [net.get_parameter(layer.index, kind) for kind in kinds]


def conv_layers(net: dn.Network) -> list[dn.LayerInfo]:
    return [layer for layer in net.layers if layer.type == "convolutional"]


@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4"])
def test_save_after_load_is_byte_identical(arch_files, tmp_path, arch):
    cfg, weights = arch_files(arch)
    with dn.Network(cfg, weights) as net:
        assert net.layers_loaded == len(conv_layers(net))
        out = net.save_weights(tmp_path / "copy.weights")
    assert out.read_bytes() == weights.read_bytes()


def test_weights_file_size_matches_the_layout(arch_files):
    cfg, weights = arch_files("yolov4-tiny")
    with dn.Network(cfg) as net:
        floats = sum(p.size for layer in conv_layers(net) for p in conv_params(net, layer))
    assert weights.stat().st_size == HEADER_BYTES + 4 * floats


def test_partial_file_loads_only_its_layers(arch_files, tmp_path):
    cfg, weights = arch_files("yolov4-tiny")
    keep = 7
    with dn.Network(cfg, weights) as source:
        layers = conv_layers(source)
        expected = [conv_params(source, layer) for layer in layers]
    cut_at = HEADER_BYTES + 4 * sum(p.size for params in expected[:keep] for p in params)
    partial = tmp_path / "yolov4-tiny.conv.7"
    partial.write_bytes(weights.read_bytes()[:cut_at])
    with dn.Network(cfg, seed=99) as fresh:
        initial = [conv_params(fresh, layer) for layer in layers]
    with dn.Network(cfg, partial, seed=99) as net:
        assert net.layers_loaded == keep
        for i, layer in enumerate(layers):
            want = expected[i] if i < keep else initial[i]
            for got, ref in zip(conv_params(net, layer), want):
                np.testing.assert_array_equal(got, ref)
    # what was loaded differs from the fresh initialisation, so the check above is not vacuous
    assert not np.array_equal(expected[0][-1], initial[0][-1])


def test_old_header_with_32bit_seen(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny")
    body = weights.read_bytes()[HEADER_BYTES:]
    old = tmp_path / "old.weights"
    old.write_bytes(np.array([0, 1, 0, 12345], dtype=np.int32).tobytes() + body)
    with dn.Network(cfg, old) as net, dn.Network(cfg, weights) as ref:
        assert net.seen == 12345
        for layer in conv_layers(net):
            for got, want in zip(conv_params(net, layer), conv_params(ref, layer)):
                np.testing.assert_array_equal(got, want)
        resaved = net.save_weights(tmp_path / "new.weights")
    data = resaved.read_bytes()
    assert np.frombuffer(data[:12], np.int32).tolist() == [0, 2, 5]
    assert np.frombuffer(data[12:20], np.uint64)[0] == 12345
    assert data[20:] == body


def test_trailing_bytes_warn(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny")
    longer = tmp_path / "longer.weights"
    longer.write_bytes(weights.read_bytes() + b"\x00" * 12)
    with pytest.warns(dn.DarknetWarning, match="12 bytes after the last layer were ignored"):
        dn.Network(cfg, longer).close()


def test_save_is_atomic_and_overwrites(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny")
    target = tmp_path / "target.weights"
    target.write_bytes(b"old contents")
    with dn.Network(cfg, weights) as net:
        net.save_weights(target)
    assert target.read_bytes() == weights.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.weights"]
