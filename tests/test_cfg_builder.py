"""Tests of darknet_py.cfg: the generated cfgs have the published layer structure.

Expected numbers were verified against AlexeyAB darknet's published cfg files; the
parameter counts against the sizes of the published .weights files. OpenCV's darknet
importer, which nobody here wrote, loads every generated cfg and runs it.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from darknet_py.cfg import ARCHITECTURES, CfgOptions, build_cfg, parse_anchors, write_cfg
from darknet_py.errors import DarknetIOError, ShapeError

Section = Tuple[str, Dict[str, str]]


def parse(text: str) -> List[Section]:
    """cfg text -> [(section, {option: value})]; [net] included; first duplicate wins."""
    sections: List[Section] = []
    for raw in text.splitlines():
        line = raw.split("#")[0].split(";")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line[1:-1], {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1].setdefault(key.strip(), value.strip())
    return sections


def layers(arch: str, **options: object) -> List[Section]:
    """The layer sections (after [net]) of a generated cfg."""
    return parse(build_cfg(arch, **options))[1:]


def net_options(arch: str, **options: object) -> Dict[str, str]:
    """The [net] options of a generated cfg."""
    kind, values = parse(build_cfg(arch, **options))[0]
    assert kind == "net"
    return values


def yolo_layers(arch: str, **options: object) -> List[Tuple[Dict[str, str], Dict[str, str]]]:
    """(conv before it, yolo) option pairs, in file order."""
    sections = layers(arch, **options)
    return [(sections[i - 1][1], values) for i, (kind, values) in enumerate(sections)
            if kind == "yolo"]


def floats(text: str) -> List[float]:
    """A comma-separated option value as numbers."""
    return [float(v) for v in text.split(",")]


# Section counts of the published cfgs (AlexeyAB/darknet cfg/<arch>.cfg).
SECTION_COUNTS = {
    "yolov3-tiny": {"convolutional": 13, "maxpool": 6, "route": 2, "upsample": 1, "yolo": 2},
    "yolov4-tiny": {"convolutional": 21, "route": 11, "maxpool": 3, "upsample": 1, "yolo": 2},
    "yolov4-tiny-3l": {"convolutional": 24, "route": 13, "maxpool": 3, "upsample": 2,
                       "yolo": 3},
    "yolov4": {"convolutional": 110, "shortcut": 23, "route": 21, "maxpool": 3, "upsample": 2,
               "yolo": 3},
}
TOTAL_LAYERS = {"yolov3-tiny": 24, "yolov4-tiny": 38, "yolov4-tiny-3l": 45, "yolov4": 162}

_TINY_CSP_ROUTES = ["-1", "-1,-2", "-6,-1"] * 3
# Every route's `layers` value of the published cfgs, in file order.
ROUTES = {
    "yolov3-tiny": ["-4", "-1,8"],
    "yolov4-tiny": _TINY_CSP_ROUTES + ["-4", "-1,23"],
    "yolov4-tiny-3l": _TINY_CSP_ROUTES + ["-4", "-1,23", "-3", "-1,15"],
    "yolov4": ["-2", "-1,-7", "-2", "-1,-10", "-2", "-1,-28", "-2", "-1,-28", "-2", "-1,-16",
               "-2", "-4", "-1,-3,-5,-6", "85", "-1,-3", "54", "-1,-3",
               "-4", "-1,-16", "-4", "-1,-37"],
}
MASKS = {
    "yolov3-tiny": ["3,4,5", "0,1,2"],
    "yolov4-tiny": ["3,4,5", "1,2,3"],  # sic: the published second head skips anchor 0
    "yolov4-tiny-3l": ["6,7,8", "3,4,5", "0,1,2"],
    "yolov4": ["0,1,2", "3,4,5", "6,7,8"],
}
# Grid stride of each yolo layer, in file order.
YOLO_STRIDES = {"yolov3-tiny": [32, 16], "yolov4-tiny": [32, 16],
                "yolov4-tiny-3l": [32, 16, 8], "yolov4": [8, 16, 32]}
TINY_ANCHORS = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]
V4_ANCHORS = [12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401]
DEFAULT_ANCHORS = {"yolov3-tiny": TINY_ANCHORS, "yolov4-tiny": TINY_ANCHORS,
                   "yolov4-tiny-3l": V4_ANCHORS, "yolov4": V4_ANCHORS}


# ---------------------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_section_counts_match_published_cfg(arch: str) -> None:
    sections = layers(arch)
    assert dict(collections.Counter(kind for kind, _ in sections)) == SECTION_COUNTS[arch]
    assert len(sections) == TOTAL_LAYERS[arch]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_route_references_match_published_cfg(arch: str) -> None:
    routes = [values["layers"] for kind, values in layers(arch) if kind == "route"]
    assert routes == ROUTES[arch]


@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4-tiny-3l"])
def test_tiny_group_routes_take_second_half(arch: str) -> None:
    grouped = [values for kind, values in layers(arch) if kind == "route" and "groups" in values]
    assert len(grouped) == 3
    assert all(v["groups"] == "2" and v["group_id"] == "1" for v in grouped)


def test_yolov4_backbone_uses_mish_and_neck_leaky() -> None:
    convs = [values for kind, values in layers("yolov4") if kind == "convolutional"]
    # 72 convs in CSPDarknet53 (layers 0..104), the rest are neck and heads.
    assert [c["activation"] for c in convs[:72]] == ["mish"] * 72
    assert {c["activation"] for c in convs[72:]} == {"leaky", "linear"}
    shortcuts = [values for kind, values in layers("yolov4") if kind == "shortcut"]
    assert all(s == {"from": "-3", "activation": "linear"} for s in shortcuts)


def test_yolov4_spp_and_yolov3_tiny_pools() -> None:
    v4_pools = [(v["size"], v["stride"]) for k, v in layers("yolov4") if k == "maxpool"]
    assert v4_pools == [("5", "1"), ("9", "1"), ("13", "1")]
    tiny_pools = [(v["size"], v["stride"]) for k, v in layers("yolov3-tiny") if k == "maxpool"]
    assert tiny_pools == [("2", "2")] * 5 + [("2", "1")]


def conv_parameter_count(sections: List[Section], channels: int) -> int:
    """Floats a darknet .weights file stores for these layers (biases, BN, kernels)."""
    return sum(sum(block) for block in conv_weight_shapes(sections, channels))


def conv_weight_shapes(sections: List[Section], channels: int) -> List[List[int]]:
    """Per conv: the float counts of its .weights blocks, in file order.

    Walks the layers to know each conv's input channels (route concatenates and may take
    one of `groups` slices; shortcut, maxpool and upsample keep the channel count).
    """
    out_channels: List[int] = []
    blocks: List[List[int]] = []
    current = channels
    for kind, values in sections:
        if kind == "convolutional":
            n, size = int(values["filters"]), int(values["size"])
            groups = int(values.get("groups", "1"))
            bn = values.get("batch_normalize") == "1"
            blocks.append([n] * (4 if bn else 1) + [n * current // groups * size * size])
            current = n
        elif kind == "route":
            refs = [int(r) for r in values["layers"].split(",")]
            current = sum(out_channels[r if r >= 0 else len(out_channels) + r] for r in refs)
            current //= int(values.get("groups", "1"))
        out_channels.append(current)
    return blocks


# Published .weights sizes (bytes): yolov3-tiny 35434956, yolov4-tiny 24251276,
# yolov4 257717640; minus the 20-byte header, divided by 4 bytes per float.
PUBLISHED_WEIGHT_FLOATS = {"yolov3-tiny": 8858734, "yolov4-tiny": 6062814,
                           "yolov4": 64429405}


@pytest.mark.parametrize("arch", sorted(PUBLISHED_WEIGHT_FLOATS))
def test_parameter_count_matches_published_weights(arch: str) -> None:
    assert conv_parameter_count(layers(arch, classes=80), 3) == PUBLISHED_WEIGHT_FLOATS[arch]


# ---------------------------------------------------------------------------------------
# [yolo] heads, anchors, [net]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("classes", [1, 2, 80])
def test_yolo_heads(arch: str, classes: int) -> None:
    heads = yolo_layers(arch, classes=classes)
    assert [yolo["mask"] for _, yolo in heads] == MASKS[arch]
    anchors = len(DEFAULT_ANCHORS[arch]) // 2
    for conv, yolo in heads:
        assert conv["filters"] == str((classes + 5) * len(yolo["mask"].split(",")))
        assert conv["activation"] == "linear" and "batch_normalize" not in conv
        assert yolo["classes"] == str(classes)
        assert yolo["num"] == str(anchors)
        assert floats(yolo["anchors"]) == DEFAULT_ANCHORS[arch]


def test_yolo_defaults_are_published_values() -> None:
    v4 = [yolo for _, yolo in yolo_layers("yolov4")]
    assert [y["scale_x_y"] for y in v4] == ["1.2", "1.1", "1.05"]
    for yolo in v4:
        assert (yolo["iou_thresh"], yolo["iou_loss"], yolo["iou_normalizer"]) == \
            ("0.213", "ciou", "0.07")
        assert (yolo["nms_kind"], yolo["beta_nms"], yolo["max_delta"]) == \
            ("greedynms", "0.6", "5")
        assert (yolo["jitter"], yolo["ignore_thresh"], yolo["random"]) == ("0.3", "0.7", "1")
    for yolo in (y for _, y in yolo_layers("yolov4-tiny-3l")):
        assert (yolo["scale_x_y"], yolo["resize"], yolo["random"]) == ("1.05", "1.5", "0")
    v3 = [yolo for _, yolo in yolo_layers("yolov3-tiny")]
    assert all("scale_x_y" not in y and "iou_loss" not in y and y["random"] == "1" for y in v3)


def test_yolo_overrides() -> None:
    heads = yolo_layers("yolov4", scale_x_y=[1.0, 1.1, 2.0], iou_loss="giou", random=False,
                        jitter=0.1, ignore_thresh=0.5, nms_kind="diounms", resize=1.2)
    assert [y["scale_x_y"] for _, y in heads] == ["1", "1.1", "2"]
    for _, yolo in heads:
        assert (yolo["iou_loss"], yolo["random"], yolo["jitter"]) == ("giou", "0", "0.1")
        assert (yolo["ignore_thresh"], yolo["nms_kind"], yolo["resize"]) == ("0.5", "diounms", "1.2")
    tiny = yolo_layers("yolov3-tiny", scale_x_y=1.05)
    assert [y["scale_x_y"] for _, y in tiny] == ["1.05", "1.05"]


ANCHORS_6 = [(7, 13), (14, 36), (26, 80), (41, 156), (69, 241), (140, 311)]


@pytest.mark.parametrize("given", [
    ANCHORS_6,
    [v for pair in ANCHORS_6 for v in pair],
    np.array(ANCHORS_6, dtype=np.float64),
    "7,13, 14,36, 26,80, 41,156, 69,241, 140,311",
])
def test_anchors_written_back(given: object) -> None:
    text = build_cfg("yolov4-tiny", classes=2, anchors=given)
    assert "anchors=7,13,  14,36,  26,80,  41,156,  69,241,  140,311\n" in text
    for _, yolo in yolo_layers("yolov4-tiny", classes=2, anchors=given):
        assert floats(yolo["anchors"]) == [v for pair in ANCHORS_6 for v in pair]


def test_fractional_anchors_keep_their_value() -> None:
    anchors = [(10.5, 14.25)] + [(20, 30)] * 8
    (_, yolo), *_ = yolo_layers("yolov4", anchors=anchors)
    assert floats(yolo["anchors"])[:4] == [10.5, 14.25, 20, 30]


def test_parse_anchors() -> None:
    assert parse_anchors("10,14,  23,27") == [(10.0, 14.0), (23.0, 27.0)]
    assert parse_anchors("anchors = 1.5, 2 3 4\n") == [(1.5, 2.0), (3.0, 4.0)]
    for bad in ("", "1,2,3", "a,b", "1,-2", "nan,1"):
        with pytest.raises(ShapeError, match="anchors"):
            parse_anchors(bad)


def test_net_section_defaults() -> None:
    v4 = net_options("yolov4", classes=2)
    assert (v4["width"], v4["height"], v4["channels"]) == ("416", "416", "3")
    assert (v4["batch"], v4["subdivisions"], v4["momentum"]) == ("64", "8", "0.949")
    assert (v4["learning_rate"], v4["mosaic"], v4["policy"]) == ("0.0013", "1", "steps")
    # darknet's rule for custom data: max(classes * 2000, 6000); steps at 80 % and 90 %.
    assert (v4["max_batches"], v4["steps"], v4["scales"]) == ("6000", "4800,5400", "0.1,0.1")
    tiny = net_options("yolov4-tiny", classes=10)
    assert (tiny["subdivisions"], tiny["momentum"], tiny["learning_rate"]) == \
        ("1", "0.9", "0.00261")
    assert (tiny["max_batches"], tiny["steps"], tiny["mosaic"]) == ("20000", "16000,18000", "0")
    assert net_options("yolov3-tiny")["learning_rate"] == "0.001"


def test_net_section_custom_values() -> None:
    values = net_options("yolov4-tiny", width=608, height=320, channels=1, batch=32,
                         subdivisions=4, max_batches=3000, steps=[1000, 2000, 2500],
                         scales=[0.1, 0.5, 0.1], learning_rate=0.002, burn_in=100,
                         mosaic=True, letter_box=True, flip=False, angle=5, hue=0.2)
    expected = {"width": "608", "height": "320", "channels": "1", "batch": "32",
                "subdivisions": "4", "max_batches": "3000", "steps": "1000,2000,2500",
                "scales": "0.1,0.5,0.1", "learning_rate": "0.002", "burn_in": "100",
                "mosaic": "1", "letter_box": "1", "flip": "0", "angle": "5", "hue": "0.2"}
    assert {key: values[key] for key in expected} == expected
    assert net_options("yolov4", max_batches=10000)["steps"] == "8000,9000"


def test_options_dataclass_and_overrides() -> None:
    base = CfgOptions(classes=3, width=320, height=320)
    assert build_cfg("yolov4-tiny", base) == build_cfg("yolov4-tiny", classes=3, width=320,
                                                      height=320)
    assert net_options("yolov4-tiny", **{"width": 640}) != net_options("yolov4-tiny")
    assert "width=256" in build_cfg("yolov4-tiny", base, width=256)
    with pytest.raises(TypeError):
        build_cfg("yolov4", clases=2)


def test_stopbackward_on_last_backbone_conv() -> None:
    sections = layers("yolov4", stopbackward=800)
    marked = [i for i, (_, values) in enumerate(sections) if "stopbackward" in values]
    assert marked == [104]
    assert sections[104][1]["filters"] == "1024" and sections[105][1]["activation"] == "leaky"
    for tiny in ("yolov4-tiny", "yolov4-tiny-3l"):  # the conv after the last CSP block's maxpool
        sections = layers(tiny, stopbackward=800)
        assert [i for i, (_, values) in enumerate(sections) if "stopbackward" in values] == [26]
        assert sections[25][0] == "maxpool" and sections[26][1]["filters"] == "512"
    with pytest.raises(ShapeError, match="stopbackward"):
        build_cfg("yolov3-tiny", stopbackward=800)


@pytest.mark.parametrize("arch, options, name", [
    ("yolov5", {}, "arch"),
    ("yolov4", {"classes": 0}, "classes"),
    ("yolov4", {"classes": 2.0}, "classes"),
    ("yolov4", {"width": 400}, "width"),
    ("yolov4", {"height": 0}, "height"),
    ("yolov4", {"height": -32}, "height"),
    ("yolov4", {"channels": 0}, "channels"),
    ("yolov4", {"batch": 0}, "batch"),
    ("yolov4", {"subdivisions": 3}, "subdivisions"),
    ("yolov4", {"anchors": TINY_ANCHORS}, "anchors"),
    ("yolov4-tiny", {"anchors": V4_ANCHORS}, "anchors"),
    ("yolov3-tiny", {"anchors": TINY_ANCHORS[:-1]}, "anchors"),
    ("yolov3-tiny", {"anchors": [(1, 2, 3)] * 6}, "anchors"),
    ("yolov3-tiny", {"anchors": [(0, 2)] * 6}, "anchors"),
    ("yolov4", {"steps": [5000, 4000]}, "steps"),
    ("yolov4", {"steps": [0, 4000]}, "steps"),
    ("yolov4", {"steps": [4000]}, "scales"),
    ("yolov4", {"max_batches": 0}, "max_batches"),
    ("yolov4", {"learning_rate": 0}, "learning_rate"),
    ("yolov4", {"momentum": 1.5}, "momentum"),
    ("yolov4", {"hue": 2}, "hue"),
    ("yolov4", {"mosaic": 2}, "mosaic"),
    ("yolov4", {"jitter": -0.1}, "jitter"),
    ("yolov4", {"ignore_thresh": 1.5}, "ignore_thresh"),
    ("yolov4", {"iou_loss": "l1"}, "iou_loss"),
    ("yolov4", {"nms_kind": "soft"}, "nms_kind"),
    ("yolov4", {"scale_x_y": 0.9}, "scale_x_y"),
    ("yolov4", {"scale_x_y": [1.1, 1.2]}, "scale_x_y"),
    ("yolov4", {"stopbackward": 0}, "stopbackward"),
])
def test_bad_arguments_raise_shape_error(arch: str, options: Dict[str, object],
                                         name: str) -> None:
    with pytest.raises(ShapeError, match=name) as info:
        build_cfg(arch, **options)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------
# write_cfg


def test_write_cfg_is_atomic_and_returns_path(tmp_path: Path) -> None:
    target = tmp_path / "model.cfg"
    target.write_text("old")
    result = write_cfg(str(target), "yolov4-tiny", classes=2)
    assert result == target and isinstance(result, Path)
    assert target.read_text() == build_cfg("yolov4-tiny", classes=2)
    assert [p.name for p in tmp_path.iterdir()] == ["model.cfg"]


def test_write_cfg_validates_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "model.cfg"
    with pytest.raises(ShapeError):
        write_cfg(target, "yolov4", classes=0)
    assert not target.exists() and not list(tmp_path.iterdir())
    with pytest.raises(DarknetIOError):
        write_cfg(tmp_path / "missing" / "model.cfg", "yolov4")


# ---------------------------------------------------------------------------------------
# Independent check: OpenCV's darknet importer loads and runs every generated cfg.


def write_random_weights(path: Path, cfg_text: str, seed: int = 0) -> None:
    """A darknet .weights file with random kernels for `cfg_text`.

    Header: int32 major 0, minor 2, revision 5, then uint64 seen = 0. Per conv: biases,
    (with batch_normalize) scales, rolling mean, rolling variance (= 1), then kernels
    scaled by sqrt(1 / fan_in) so activations stay bounded through 100+ layers.
    """
    rng = np.random.default_rng(seed)
    sections = parse(cfg_text)
    channels = int(sections[0][1]["channels"])
    with open(path, "wb") as handle:
        np.array([0, 2, 5], dtype=np.int32).tofile(handle)
        np.array([0], dtype=np.uint64).tofile(handle)
        for block in conv_weight_shapes(sections[1:], channels):
            n, kernels = block[0], block[-1]
            if len(block) == 5:
                np.zeros(n, np.float32).tofile(handle)  # biases (BN beta)
                np.ones(n, np.float32).tofile(handle)  # scales
                np.zeros(n, np.float32).tofile(handle)  # rolling mean
                np.ones(n, np.float32).tofile(handle)  # rolling variance
            else:
                np.zeros(n, np.float32).tofile(handle)
            scale = np.float32(np.sqrt(n / kernels))
            (rng.standard_normal(kernels, dtype=np.float32) * scale).tofile(handle)


@pytest.mark.parametrize("arch, width, height", [
    ("yolov3-tiny", 416, 416),
    ("yolov4-tiny", 416, 416),
    ("yolov4-tiny", 320, 192),
    ("yolov4-tiny-3l", 416, 416),
    ("yolov4", 416, 416),
])
def test_opencv_runs_generated_cfg(tmp_path: Path, arch: str, width: int, height: int) -> None:
    classes = 3
    cfg_path = write_cfg(tmp_path / f"{arch}.cfg", arch, classes=classes, width=width,
                         height=height)
    weights_path = tmp_path / f"{arch}.weights"
    write_random_weights(weights_path, cfg_path.read_text())
    net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))
    blob = np.random.default_rng(1).random((1, 3, height, width), dtype=np.float32)
    net.setInput(blob)
    outputs = net.forward(net.getUnconnectedOutLayersNames())

    masks = [len(m.split(",")) for m in MASKS[arch]]
    expected_rows = sorted((height // s) * (width // s) * m
                           for s, m in zip(YOLO_STRIDES[arch], masks))
    assert sorted(out.shape[0] for out in outputs) == expected_rows
    for out in outputs:
        assert out.shape[1] == 5 + classes
        assert np.isfinite(out).all()
        assert ((out[:, 4] >= 0) & (out[:, 4] <= 1)).all()  # objectness is a probability
