"""Bad input raises a darknet_py.DarknetError subclass naming the file and line (or field);
the interpreter survives every case (the test process goes on to the next)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import darknet_py as dn

NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
CONV = "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
HEAD = "[convolutional]\nfilters=21\nsize=1\nactivation=linear\n"
YOLO = "[yolo]\nmask=0,1,2\nanchors=10,10, 20,20, 30,30\nclasses=2\nnum=3\n"

# (case id, cfg text, error class, pattern the message must match; {path} is the cfg path)
CFG_CASES = [
    ("empty", "", dn.CfgError, r"{path}: empty cfg"),
    ("only comments", "# nothing\n; here\n\n", dn.CfgError, r"{path}: empty cfg"),
    ("no net first", CONV + NET, dn.CfgError, r"{path}:1: the first section must be \[net\]"),
    ("unknown section", NET + "[frobnicate]\nx=1\n", dn.CfgError, r"{path}:5: unknown section \[frobnicate\]"),
    ("unsupported section", NET + CONV + "[avgpool]\n", dn.CfgError, r"{path}:11: unsupported section \[avgpool\]"),
    ("bad integer", "[net]\nwidth=abc\nheight=64\nchannels=3\n" + CONV, dn.CfgError,
     r"{path}:2: \[net\] option 'width': 'abc' is not an integer"),
    ("bad float", NET + "learning_rate=1e\n" + CONV, dn.CfgError,
     r"{path}:5: \[net\] option 'learning_rate': '1e' is not a number"),
    ("unknown activation", NET + CONV.replace("leaky", "mish2"), dn.CfgError,
     r"{path}:10: \[convolutional\] unknown activation 'mish2'"),
    ("route to missing layer", NET + CONV + "[route]\nlayers=-5\n", dn.CfgError,
     r"{path}:12: \[route\] layers=-5 points to layer -4"),
    ("route forward", NET + CONV + "[route]\nlayers=3\n", dn.CfgError,
     r"{path}:12: \[route\] layers=3 points to layer 3, which is not an earlier layer"),
    ("route without layers", NET + CONV + "[route]\n", dn.CfgError, r"{path}:11: \[route\] option 'layers' is missing"),
    ("filters not matching yolo", NET + CONV + HEAD.replace("21", "20") + YOLO, dn.CfgError,
     r"{path}:15: \[yolo\] the layer before \[yolo\] has filters=20, but classes=2 with 3 masks needs "
     r"filters=\(classes \+ 5\) \* masks = 21"),
    ("anchors count", NET + CONV + HEAD + YOLO.replace("30,30", ""), dn.CfgError,
     r"{path}:17: \[yolo\] 4 anchor values given, num=3 needs 6"),
    ("mask out of range", NET + CONV + HEAD + YOLO.replace("mask=0,1,2", "mask=0,1,7"), dn.CfgError,
     r"{path}:16: \[yolo\] mask 7 is outside the num=3 anchors"),
    ("option before section", "width=3\n" + NET, dn.CfgError, r"{path}:1: option 'width=3' before the first"),
    ("line without equals", NET + "banana\n" + CONV, dn.CfgError, r"{path}:5: expected 'key=value'"),
    ("unclosed header", NET + "[convolutional\n", dn.CfgError, r"{path}:5: section header without '\]'"),
    ("shortcut shape", NET + CONV + CONV.replace("stride=1", "stride=2") + "[shortcut]\nfrom=-2\n", dn.CfgError,
     r"{path}:18: \[shortcut\] layer 0 is 64x64x8 but the previous layer is 32x32x8"),
    ("missing size", "[net]\nchannels=3\n" + CONV, dn.CfgError,
     r"{path}:1: \[net\] width, height and channels must be positive"),
    ("subdivisions > batch", NET + "batch=4\nsubdivisions=8\n" + CONV, dn.CfgError,
     r"{path}:6: \[net\] subdivisions must be in \[1, batch=4\], got 8"),
    ("groups", NET + CONV.replace("filters=8", "filters=8\ngroups=2"), dn.CfgError,
     r"{path}:7: \[convolutional\] groups=2 must divide the input channels \(3\)"),
    ("kernel too big", NET.replace("64", "2") + CONV.replace("size=3", "size=7").replace("pad=1", "pad=0"),
     dn.CfgError, r"{path}:7: \[convolutional\] kernel 7x7 does not fit the 2x2 input"),
    ("unsupported policy", NET + "policy=sgdr\n" + CONV, dn.CfgError,
     r"{path}:5: \[net\] learning-rate policy 'sgdr' is not supported"),
    ("steps without scales", NET + "policy=steps\nsteps=10,20\n" + CONV, dn.CfgError,
     r"{path}:1: \[net\] 0 scales for 2 steps"),
    ("unknown nms kind", NET + CONV + HEAD + YOLO + "nms_kind=fancy\n", dn.CfgError,
     r"{path}:20: \[yolo\] unknown nms_kind 'fancy'"),
    ("unsupported dilation", NET + CONV + "dilation=2\n", dn.CfgError,
     r"{path}:11: \[convolutional\] option 'dilation=2' is not supported"),
    ("yolo first", NET + "[yolo]\nclasses=1\nnum=1\nanchors=1,1\n", dn.CfgError,
     r"{path}:5: \[yolo\] the layer before \[yolo\] has filters=3"),
    ("binary file", "\x00\x01\x02garbage", dn.CfgError, r"{path}:1: binary data"),
    ("no layers", NET, dn.CfgError, r"{path}: the cfg has a \[net\] section but no layers"),
]


@pytest.mark.parametrize("text,error,pattern", [c[1:] for c in CFG_CASES], ids=[c[0] for c in CFG_CASES])
def test_bad_cfg(tmp_path, text, error, pattern):
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(error) as info:
        dn.Network(path)
    assert isinstance(info.value, dn.DarknetError)
    assert re.search(pattern.format(path=re.escape(str(path))), str(info.value)), str(info.value)


def tiny_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.cfg"
    path.write_text(NET + CONV + HEAD + YOLO)
    return path


def test_missing_cfg(tmp_path):
    with pytest.raises(dn.DarknetIOError, match=re.escape(str(tmp_path / "nope.cfg")) + ": cfg file not found"):
        dn.Network(tmp_path / "nope.cfg")


def test_unknown_option_is_a_warning_not_an_error(tmp_path):
    path = tmp_path / "warn.cfg"
    path.write_text(NET + "mixup=1\n" + CONV + HEAD + YOLO)
    with pytest.warns(dn.DarknetWarning, match=re.escape(f"{path}:5: [net] unknown option 'mixup' ignored")):
        with dn.Network(path) as net:
            assert len(net.layers) == 3


def test_missing_weights(tmp_path):
    with pytest.raises(dn.DarknetIOError, match="missing.weights: weights file not found"):
        dn.Network(tiny_cfg(tmp_path), tmp_path / "missing.weights")


def test_weights_shorter_than_header(tmp_path):
    weights = tmp_path / "short.weights"
    weights.write_bytes(b"\x00\x00\x00\x00\x02\x00")
    with pytest.raises(dn.WeightsError, match=re.escape(str(weights)) + ": too short for a .weights header"):
        dn.Network(tiny_cfg(tmp_path), weights)


def test_weights_with_garbage_version(tmp_path):
    weights = tmp_path / "garbage.weights"
    weights.write_bytes(np.array([123456, 99999, 1, 0, 0], dtype=np.int32).tobytes())
    with pytest.raises(dn.WeightsError, match="not a darknet .weights file"):
        dn.Network(tiny_cfg(tmp_path), weights)


def test_truncated_weights(tmp_path):
    cfg = tiny_cfg(tmp_path)
    full = tmp_path / "full.weights"
    with dn.Network(cfg) as net:
        net.save_weights(full)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(full.read_bytes()[:-10])
    with pytest.raises(dn.WeightsError, match=re.escape(str(cut)) + r": truncated: layer 1 \(\[convolutional\] at cfg line 11\)"):
        dn.Network(cfg, cut)


@pytest.fixture
def tiny_net(tmp_path):
    with dn.Network(tiny_cfg(tmp_path), batch=2) as net:
        yield net


@pytest.mark.parametrize("blob,pattern", [
    (np.zeros((1, 3, 32, 32), np.float32), r"expects float32 \(N, 3, 64, 64\) NCHW, got shape \(1, 3, 32, 32\)"),
    (np.zeros((3, 64, 64), np.float32), r"got shape \(3, 64, 64\)"),
    (np.zeros((1, 64, 64, 3), np.float32), r"got shape \(1, 64, 64, 3\)"),
    (np.zeros((0, 3, 64, 64), np.float32), r"got shape \(0, 3, 64, 64\)"),
    (np.zeros((1, 3, 64, 64), dtype=object), r"expects numbers, got dtype object"),
    ([[0.0]], r"expects a numpy array, got list"),
], ids=["wrong size", "3d", "nhwc", "empty", "object dtype", "list"])
def test_forward_wrong_input(tiny_net, blob, pattern):
    with pytest.raises(dn.ShapeError, match=pattern):
        tiny_net.forward(blob)


@pytest.mark.parametrize("image,pattern", [
    (np.zeros((10, 10), np.uint8), r"BGR uint8 shaped \(H, W, 3\), got uint8 \(10, 10\)"),
    (np.zeros((10, 10, 3), np.float32), r"got float32 \(10, 10, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"got uint8 \(10, 10, 4\)"),
    (np.zeros((0, 10, 3), np.uint8), r"got uint8 \(0, 10, 3\)"),
], ids=["gray", "float", "bgra", "empty"])
def test_detect_wrong_image(tiny_net, image, pattern):
    with pytest.raises(dn.ShapeError, match=pattern):
        tiny_net.detect(image)


def test_closed_network(tmp_path):
    net = dn.Network(tiny_cfg(tmp_path))
    net.close()
    net.close()  # twice is fine
    with pytest.raises(dn.StateError, match="tiny.cfg is closed"):
        net.forward(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(dn.StateError):
        net.save_weights(tmp_path / "x.weights")
    assert not (tmp_path / "x.weights").exists()


@pytest.mark.parametrize("batch", [0, -1, 1.5])
def test_bad_batch(tmp_path, batch):
    with pytest.raises(dn.ShapeError, match="batch must be a positive integer"):
        dn.Network(tiny_cfg(tmp_path), batch=batch)


def test_bad_thresholds(tiny_net):
    with pytest.raises(dn.ShapeError, match="thresh and nms must be in"):
        tiny_net.detect(np.zeros((8, 8, 3), np.uint8), thresh=1.5)


def test_names_count(tmp_path):
    with pytest.raises(dn.ShapeError, match="1 class names for a network with 2 classes"):
        dn.Network(tiny_cfg(tmp_path), names=["only"])


def test_failed_save_keeps_previous_file(tmp_path, tiny_net):
    target = tmp_path / "keep.weights"
    target.write_bytes(b"previous")
    tiny_net.close()
    with pytest.raises(dn.StateError):
        tiny_net.save_weights(target)
    assert target.read_bytes() == b"previous"


def test_save_into_missing_directory(tmp_path, tiny_net):
    with pytest.raises(dn.DarknetIOError, match="cannot write weights"):
        tiny_net.save_weights(tmp_path / "no" / "such" / "dir.weights")


def test_errors_are_catchable_as_builtin_kinds(tmp_path):
    with pytest.raises(ValueError):
        dn.Network(tiny_cfg(tmp_path), names=["x"])
    with pytest.raises(OSError):
        dn.Network(tmp_path / "missing.cfg")
