"""Holes closed by issue 13: the engine owns the input that backward() reads later, error
messages quote file contents escaped and bounded, absurd sizes from files are DarknetErrors."""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

import darknet_py as dn
from darknet_py import crowdhuman
from darknet_py.datafile import read_data_file, read_labels
from darknet_py.errors import quote
from darknet_py.imagesize import MAX_IMAGE_PIXELS, image_size, jpeg_size

NET = "[net]\nwidth=16\nheight=16\nchannels=3\n"
CONV = "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
ESCAPE = "\x1b[31m"  # a terminal colour code, as a hostile file would carry
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def write(path: Path, text) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------- forward_train / backward


def _gradients(net: dn.Network, blob: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    net.zero_grad()
    net.forward_train(blob)
    # allocations between the two calls, as any caller makes: they reuse freed temporaries
    scratch = [np.full(blob.shape, 7.0, dtype=np.float32) for _ in range(4)]
    input_grad = net.backward(top)
    del scratch
    return input_grad, net.get_parameter(0, "weights_grad")


@pytest.mark.parametrize("make_input", [
    pytest.param(lambda x: x.astype(np.float64), id="float64"),
    pytest.param(lambda x: np.asfortranarray(x), id="non-contiguous"),
    pytest.param(lambda x: x[:, ::-1].copy()[:, ::-1], id="negative strides"),
])
def test_backward_reads_the_input_forward_train_was_given(tmp_path, make_input):
    cfg = write(tmp_path / "net.cfg", NET + CONV + CONV.replace("filters=4", "filters=2"))
    rng = np.random.default_rng(0)
    blob = rng.uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    top = rng.normal(0, 1, (2, 2, 16, 16)).astype(np.float32)
    with dn.Network(cfg, batch=2, seed=3) as net:
        want_input, want_weights = _gradients(net, blob, top)
        got_input, got_weights = _gradients(net, make_input(blob), top)
    assert np.abs(want_weights).max() > 0
    np.testing.assert_allclose(got_weights, want_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_input, want_input, rtol=1e-5, atol=1e-6)


def test_backward_ignores_changes_to_the_input_after_forward_train(tmp_path):
    cfg = write(tmp_path / "net.cfg", NET + CONV)
    rng = np.random.default_rng(1)
    blob = rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    top = rng.normal(0, 1, (1, 4, 16, 16)).astype(np.float32)
    with dn.Network(cfg, seed=3) as net:
        _, want = _gradients(net, blob, top)
        net.zero_grad()
        mine = blob.copy()
        net.forward_train(mine)
        mine[:] = 0  # the caller's buffer changes: backward must still see the forward's input
        net.backward(top)
        np.testing.assert_allclose(net.get_parameter(0, "weights_grad"), want, rtol=1e-5, atol=1e-6)


def test_backward_after_resize_needs_a_new_forward_train(tmp_path):
    cfg = write(tmp_path / "net.cfg", NET + CONV)
    with dn.Network(cfg, seed=3) as net:
        net.forward_train(np.zeros((1, 3, 16, 16), np.float32))
        net.resize(32, 32)
        with pytest.raises(dn.StateError, match="forward_train"):
            net.backward(np.zeros((1, 4, 32, 32), np.float32))


# --------------------------------------------------------------------------- escaped, bounded quotes


def test_quote_escapes_and_bounds():
    assert quote("abc") == "'abc'"
    assert quote(ESCAPE + "red") == r"'\x1b[31mred'"
    assert quote("a'b\\c") == r"'a\'b\\c'"
    assert quote("\u202etxt.exe") == r"'\u202etxt.exe'"  # right-to-left override
    long = quote("x" * 1000)
    assert long == "'" + "x" * 80 + "...'"
    assert len(quote("\x00" * 1000)) <= 90 and quote("\x00" * 1000).endswith("...'")
    assert quote(b"\xff\x1b") == r"'\xff\x1b'"
    assert quote(12.5) == "12.5" and quote(None) == "None"
    assert len(quote(list(range(10**5)))) <= 90


def _message(exc_info) -> str:
    return str(exc_info.value)


@pytest.mark.parametrize("line", [
    pytest.param(ESCAPE + "banana", id="line without equals"),
    pytest.param("[conv" + ESCAPE, id="unclosed header"),
    pytest.param("=" + ESCAPE, id="option without name"),
])
def test_cfg_line_errors_quote_escaped(tmp_path, line):
    cfg = write(tmp_path / "bad.cfg", NET + line + "\n" + CONV)
    with pytest.raises(dn.CfgError) as info:
        dn.Network(cfg)
    message = _message(info)
    assert r"\x1b[31m" in message and not CONTROL.search(message), message
    assert f"{cfg}:5:" in message


@pytest.mark.parametrize("text", [
    pytest.param(NET.replace("width=16", "width=1" + ESCAPE) + CONV, id="integer"),
    pytest.param(NET + "momentum=0.9" + ESCAPE + "\n" + CONV, id="float"),
    pytest.param(NET + CONV.replace("leaky", "leaky" + ESCAPE), id="activation"),
    pytest.param(NET + "policy=" + ESCAPE + "\n" + CONV, id="policy"),
    pytest.param(NET + "steps=1," + ESCAPE + "\npolicy=steps\nscales=1,1\n" + CONV, id="list item"),
    pytest.param(NET + CONV + "[" + ESCAPE + "]\n", id="section name"),
    pytest.param(NET + CONV + "dilation=" + ESCAPE + "\n", id="unsupported value"),
])
def test_cfg_value_errors_quote_escaped(tmp_path, text):
    cfg = write(tmp_path / "bad.cfg", text)
    with pytest.raises(dn.CfgError) as info:
        dn.Network(cfg)
    message = _message(info)
    assert r"\x1b[31m" in message and not CONTROL.search(message), message


def test_cfg_error_quotes_are_bounded(tmp_path):
    cfg = write(tmp_path / "bad.cfg", NET + "x" * 5000 + "\n" + CONV)
    with pytest.raises(dn.CfgError) as info:
        dn.Network(cfg)
    message = _message(info)
    assert "x" * 80 + "...'" in message and "x" * 81 not in message
    assert len(message) < len(str(cfg)) + 150


def test_binary_cfg_error_has_no_control_characters(tmp_path):
    cfg = write(tmp_path / "bad.cfg", bytes(range(1, 256)) * 3)
    with pytest.raises(dn.CfgError) as info:
        dn.Network(cfg)
    assert not CONTROL.search(_message(info)), _message(info)


def test_unknown_option_warning_is_escaped(tmp_path):
    cfg = write(tmp_path / "warn.cfg", NET + "colour" + ESCAPE + "=1\n" + CONV)
    with pytest.warns(dn.DarknetWarning) as record:
        dn.Network(cfg).close()
    texts = [str(w.message) for w in record]
    assert any(r"\x1b[31m" in t for t in texts) and not any(CONTROL.search(t) for t in texts), texts


@pytest.mark.parametrize("text, error", [
    pytest.param("classes = 2\nbanana" + ESCAPE + "\n", dn.DataError, id="data line"),
    pytest.param("classes = 2" + ESCAPE + "\n", dn.DataError, id="data classes"),
])
def test_data_file_errors_quote_escaped(tmp_path, text, error):
    path = write(tmp_path / "x.data", text)
    with pytest.raises(error) as info:
        read_data_file(path)
    message = _message(info)
    assert r"\x1b[31m" in message and not CONTROL.search(message), message


def test_label_values_beyond_float32_are_refused(tmp_path):
    with pytest.raises(dn.DataError, match=r"x\.txt:2: value beyond float32 range"):
        read_labels(write(tmp_path / "x.txt", "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 3.5e38\n"))


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.1" + ESCAPE, "0 0.5 0.5 0.1 0.1 " + ESCAPE,
                                  ESCAPE + " 0.5 0.5 0.1 0.1", "0" * 500 + "x 1 1 1 1"])
def test_label_errors_quote_escaped_and_bounded(tmp_path, line):
    path = write(tmp_path / "x.txt", line + "\n")
    with pytest.raises(dn.DataError) as info:
        read_labels(path)
    message = _message(info)
    assert not CONTROL.search(message) and len(message) < len(str(path)) + 150, message


@pytest.mark.parametrize("record", [
    '{"ID": "a\\u001b[31m/b"}',
    '{"ID": "x", "gtboxes": [{"tag": 5, "hbox": [1, 2, 3, "\\u001b[31m"]}]}',
    '{"ID": "x", "gtboxes": [{"tag": "\\u001b", "hbox": [1, 2, 3, "' + "y" * 5000 + '"]}]}',
    '{"ID": "x", "gtboxes": [{"tag": "person", "extra": {"ignore": "\\u001b[31m"}}]}',
    '{"ID": "x", "gtboxes": [{"tag": ' + "[" * 50 + "]" * 50 + '}]}',
])
def test_odgt_errors_quote_escaped_and_bounded(tmp_path, record):
    path = write(tmp_path / "a.odgt", record + "\n")
    with pytest.raises(dn.DataError) as info:
        list(crowdhuman.parse_odgt(path))
    message = _message(info)
    assert not CONTROL.search(message) and len(message) < len(str(path)) + 200, message


# --------------------------------------------------------------------------- absurd sizes


ABSURD_CFGS = [
    ("width", NET.replace("width=16", "width=2000000000") + CONV),
    ("width x height", NET.replace("width=16", "width=60000").replace("height=16", "height=60000") + CONV),
    ("channels", NET.replace("channels=3", "channels=2000000000") + CONV),
    ("filters", NET + CONV.replace("filters=4", "filters=2147483647")),
    ("weights", NET + CONV.replace("filters=4", "filters=60000") + CONV.replace("filters=4", "filters=60000")),
    ("network weights", "[net]\nwidth=1\nheight=1\nchannels=8192\n" + "[convolutional]\nfilters=8192\nsize=1\n" * 3),
    ("kernel", NET + CONV.replace("size=3", "size=2000000000").replace("pad=1", "pad=0\npadding=1000000000")),
    ("padding", NET + CONV.replace("pad=1", "pad=0\npadding=2147483647")),
    ("stride", NET + CONV.replace("stride=1", "stride=2147483647")),
    ("upsample", NET + CONV + "[upsample]\nstride=2000000000\n"),
    ("upsample chain", NET + CONV + "[upsample]\nstride=1000\n[upsample]\nstride=1000\n"),
    ("maxpool", NET + CONV + "[maxpool]\nsize=2147483647\n"),
    ("maxpool padding", NET + CONV + "[maxpool]\nsize=2\npadding=2147483647\n"),
    ("route channels", NET + CONV.replace("filters=4", "filters=65536") + "[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n"
     "[route]\nlayers=-1,-1,-1,-1,-1,-1,-1,-1\n"),
    ("yolo classes", NET + CONV + "[yolo]\nmask=0\nanchors=1,1\nnum=1\nclasses=2147483647\n"),
    ("yolo max", NET + CONV.replace("filters=4", "filters=6") + "[yolo]\nmask=0\nanchors=1,1\nnum=1\nclasses=1\n"
     "max=2000000000\n"),
]


@pytest.mark.parametrize("text", [pytest.param(text, id=name) for name, text in ABSURD_CFGS])
def test_absurd_sizes_in_a_cfg_are_cfg_errors(tmp_path, text):
    cfg = write(tmp_path / "big.cfg", text)
    with pytest.raises(dn.CfgError, match=r"big\.cfg:\d+: "):
        dn.Network(cfg)


def test_absurd_batch_is_a_shape_error(tmp_path):
    cfg = write(tmp_path / "net.cfg", NET + CONV)
    with pytest.raises(dn.ShapeError, match="batch"):
        dn.Network(cfg, batch=2**31 - 1)


def test_absurd_resize_is_a_shape_error(tmp_path):
    cfg = write(tmp_path / "net.cfg", NET + CONV + "[upsample]\nstride=64\n")
    with dn.Network(cfg) as net:
        with pytest.raises(dn.ShapeError):
            net.resize(2**30, 2**30)
        with pytest.raises(dn.ShapeError):
            net.resize(60000, 60000)
        net.resize(32, 32)  # still usable
        outputs = net.forward_layer_outputs(np.zeros((1, 3, 32, 32), np.float32))
        assert outputs[-1].shape == (1, 4, 2048, 2048)


def _jpeg(width: int, height: int, tail: bytes = b"") -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + tail


def test_jpeg_header_sizes(tmp_path):
    import io

    assert jpeg_size(io.BytesIO(_jpeg(640, 480))) == (640, 480)
    assert 65535 * 65535 > MAX_IMAGE_PIXELS
    big = write(tmp_path / "big.jpg", _jpeg(65535, 65535, b"\xff\xd9"))
    with pytest.raises(dn.DataError, match=r"big\.jpg: .*65535x65535"):
        image_size(big)


def test_absurd_jpeg_is_refused_before_decoding(tmp_path):
    from darknet_py.data import read_image

    big = write(tmp_path / "big.jpg", _jpeg(40000, 40000, b"\xff\xd9"))
    with pytest.raises(dn.DataError, match=r"big\.jpg: .*40000x40000"):
        read_image(big)


def test_weights_header_with_absurd_version_is_a_weights_error(tmp_path):
    cfg = write(tmp_path / "net.cfg", NET + CONV)
    bad = write(tmp_path / "bad.weights", struct.pack("<iii", 2**31 - 1, 2**31 - 1, 0) + b"\0" * 64)
    with pytest.raises(dn.WeightsError, match=r"bad\.weights: not a darknet \.weights file"):
        dn.Network(cfg, bad)


@pytest.mark.parametrize("text, error, pattern", [
    ("classes = 4294967296\n", dn.DataError, r"x\.data:1: classes must be an integer in \[1, 65536\]"),
    ("classes = " + "9" * 5000 + "\n", dn.DataError, r"x\.data:1: classes must be an integer"),
    ("classes = 2\nnames = /dev/zero\n", dn.DarknetIOError, r"/dev/zero: \.names file is not a regular file"),
])
def test_absurd_data_files_are_refused(tmp_path, text, error, pattern):
    path = write(tmp_path / "x.data", text)
    with pytest.raises(error, match=pattern):
        read_data_file(path)


@pytest.mark.parametrize("record, pattern", [
    ('{"ID": "x", "gtboxes": ' + "[" * 50000 + "]" * 50000 + "}", r"nested too deeply"),
    ('{"ID": "x", "gtboxes": [{"hbox": [' + "9" * 5000 + ", 1, 1, 1]}]}", r"invalid JSON \(Exceeds the limit"),
    ('{"ID": "x", "gtboxes": [{"hbox": [' + "9" * 400 + ", 1, 1, 1]}]}", r"hbox: expected a finite number"),
])
def test_absurd_odgt_records_are_data_errors(tmp_path, record, pattern):
    path = write(tmp_path / "a.odgt", record + "\n")
    with pytest.raises(dn.DataError, match=pattern):
        list(crowdhuman.parse_odgt(path))


def test_paths_too_long_for_the_file_system_are_not_oserrors(tmp_path):
    from darknet_py.datafile import read_image_list
    from darknet_py.images import read_image

    listed = read_image_list(write(tmp_path / "list.txt", "9" * 400 + "\n"))
    assert [p.name for p in listed] == ["9" * 400]
    with pytest.raises(dn.DarknetError, match="image not found"):
        read_image(listed[0])
    with pytest.raises(dn.DataError, match="too long for a file name"):
        list(crowdhuman.parse_odgt(write(tmp_path / "a.odgt", '{"ID": "' + "a" * 300 + '"}\n')))


def test_maxpool_window_far_larger_than_the_input_costs_only_the_input(tmp_path):
    import time

    cfg = write(tmp_path / "pool.cfg", "[net]\nwidth=16\nheight=16\nchannels=16\n[maxpool]\nsize=65535\nstride=2\n")
    blob = np.random.default_rng(2).normal(0, 1, (1, 16, 16, 16)).astype(np.float32)
    with dn.Network(cfg) as net:
        began = time.perf_counter()
        out = net.forward_layer_outputs(blob)[0]
        elapsed = time.perf_counter() - began
    assert out.shape == (1, 16, 8, 8)
    # every window covers the whole input: each output is its channel's maximum
    np.testing.assert_array_equal(out, np.broadcast_to(blob.max(axis=(2, 3))[:, :, None, None], out.shape))
    assert elapsed < 0.5, elapsed  # it visited 65535 x 65535 taps per output before (seconds)
