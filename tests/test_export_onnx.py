"""ONNX export: the graph checks, and ONNX Runtime on it equals the engine's own forward pass.

The engine itself equals an exact float64 evaluation of darknet's formulas and OpenCV DNN
(test_forward_opencv.py); here ONNX Runtime (CPU provider, written by others) runs the export.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import darknet_py as dn
from darknet_py import detect
from darknet_py.onnx_export import build_model

from helpers import write_random_weights, write_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARCHS = ("yolov3-tiny", "yolov4-tiny", "yolov4-tiny-3l", "yolov4")
SIZES = ((416, 416), (320, 192))
TOLERANCE = 1e-4


def run_onnx(path: Path, blob: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": blob})))


def engine_decoded(net: dn.Network, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """boxes (N, B, 4) x1 y1 x2 y2 and scores (N, B, classes) as detect() decodes the engine's
    outputs before thresholds and NMS (every candidate, network-relative)."""
    outputs = net.forward(blob)
    all_boxes, all_scores = [], []
    for i in range(blob.shape[0]):
        boxes, probs = detect.decode([o[i] for o in outputs], net.yolo_layers, net.width, net.height, net.width,
                                     net.height, False, thresh=-1.0)
        all_boxes.append(np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1))
        all_scores.append(probs)
    return np.stack(all_boxes), np.stack(all_scores)


def blob_of(net: dn.Network, n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, net.channels, net.height, net.width), dtype=np.float32)


def check_graph(path: Path, expected: dict[str, list]) -> onnx.ModelProto:
    """check_model(full_check) passes and shape inference gives every output this shape."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    value_infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name, shape in expected.items():
        dims = value_infos[name].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == shape, name
    # the inferred shape of the head outputs must also come out of the graph itself, not only the declaration
    graph_outputs = {o.name: o for o in onnx.shape_inference.infer_shapes(model).graph.output}
    assert set(graph_outputs) == set(expected)
    return model


def candidates(net: dn.Network) -> int:
    return sum(len(h.mask) * h.output_shape[1] * h.output_shape[2] for h in net.yolo_layers)


# --------------------------------------------------------------------------- every architecture


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("arch", ARCHS)
def test_decoded_export_equals_engine(arch_files, tmp_path, arch, width, height):
    cfg, weights = arch_files(arch, width, height)
    with dn.Network(cfg, weights) as net:
        path = dn.export_onnx(cfg, weights, tmp_path / "model.onnx")
        total = candidates(net)
        check_graph(path, {"boxes": [1, total, 4], "scores": [1, total, net.classes]})
        blob = blob_of(net)
        got = run_onnx(path, blob)
        boxes, scores = engine_decoded(net, blob)
    assert got["boxes"].shape == boxes.shape and got["scores"].shape == scores.shape
    np.testing.assert_allclose(got["boxes"], boxes, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got["scores"], scores, rtol=0, atol=TOLERANCE)
    assert scores.max() > 0.1  # the comparison covers real values, not a field of zeros


@pytest.mark.parametrize("arch", ARCHS)
def test_raw_export_is_each_heads_input(arch_files, tmp_path, arch):
    cfg, weights = arch_files(arch, 320, 192)
    with dn.Network(cfg, weights) as net:
        path = net.export_onnx(tmp_path / "raw.onnx", outputs="raw")
        check_graph(path, {f"raw_{k}": [1, *h.output_shape] for k, h in enumerate(net.yolo_layers)})
        blob = blob_of(net)
        got = run_onnx(path, blob)
        every_layer = net.forward_layer_outputs(blob)
        for k, head in enumerate(net.yolo_layers):
            expected = every_layer[head.index - 1]  # a [yolo] reads the layer before it
            np.testing.assert_allclose(got[f"raw_{k}"], expected, rtol=0, atol=TOLERANCE)
            # varied values, and not the [yolo] layer's activated output
            assert expected.std() > 1e-3 and np.abs(expected - every_layer[head.index]).max() > 0.1


def test_dynamic_batch_runs_batches_of_one_and_three(arch_files, tmp_path):
    cfg, weights = arch_files("yolov4-tiny")
    with dn.Network(cfg, weights) as net:
        path = net.export_onnx(tmp_path / "dynamic.onnx", dynamic_batch=True)
        total = candidates(net)
        model = check_graph(path, {"boxes": ["batch", total, 4], "scores": ["batch", total, 2]})
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        for n in (1, 3):
            blob = blob_of(net, n, seed=n)
            got = run_onnx(path, blob)
            boxes, scores = engine_decoded(net, blob)
            np.testing.assert_allclose(got["boxes"], boxes, rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(got["scores"], scores, rtol=0, atol=TOLERANCE)


def test_fixed_batch_other_than_one(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny", 320, 192)
    with dn.Network(cfg, weights, batch=2) as net:
        path = net.export_onnx(tmp_path / "b2.onnx", batch=2, outputs="raw")
        check_graph(path, {f"raw_{k}": [2, *h.output_shape] for k, h in enumerate(net.yolo_layers)})
        blob = blob_of(net, 2)
        got = run_onnx(path, blob)
        every_layer = net.forward_layer_outputs(blob)
        np.testing.assert_allclose(got["raw_1"], every_layer[net.yolo_layers[1].index - 1], rtol=0, atol=TOLERANCE)


def fp16_model_checks(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    conv_weights = [t for t in model.graph.initializer if re.fullmatch(r"l\d+_w_\d+", t.name)]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    return model


@pytest.mark.parametrize("arch,width,height", [("yolov4-tiny", 416, 416), ("yolov4-tiny-3l", 320, 192),
                                               ("yolov4", 320, 192)])
def test_fp16_export_within_1e_2_in_onnxruntime(arch_files, tmp_path, arch, width, height):
    """ONNX Runtime's CPU provider takes the float16 model as it is; where the CPU has no float16
    kernels (x86 without AVX512-FP16) it computes in float32 on the float16-rounded weights."""
    cfg, weights = arch_files(arch, width, height)
    with dn.Network(cfg, weights) as net:
        path = net.export_onnx(tmp_path / "fp16.onnx", fp16=True)
        total = candidates(net)
        check_graph(path, {"boxes": [1, total, 4], "scores": [1, total, 2]})
        fp16_model_checks(path)
        blob = blob_of(net)
        got = run_onnx(path, blob)
        boxes, scores = engine_decoded(net, blob)
    assert got["boxes"].dtype == np.float32
    np.testing.assert_allclose(got["boxes"], boxes, rtol=0, atol=1e-2)
    np.testing.assert_allclose(got["scores"], scores, rtol=0, atol=1e-2)
    assert np.abs(got["scores"] - scores).max() > 0  # the weights really are float16


@pytest.mark.parametrize("arch,width,height", [("yolov4-tiny", 160, 96), ("yolov4", 96, 64)])
def test_fp16_arithmetic_within_1e_2_in_the_onnx_reference_evaluator(tmp_path, arch, width, height):
    """onnx.reference (the onnx project's NumPy implementation of every operator) keeps float16
    tensors between operators: float16 arithmetic, whatever the CPU."""
    from onnx.reference import ReferenceEvaluator

    from helpers import write_arch_cfg

    cfg = write_arch_cfg(tmp_path, arch, width=width, height=height)
    weights = write_random_weights(cfg, tmp_path / "w.weights")
    with dn.Network(cfg, weights) as net:
        path = net.export_onnx(tmp_path / "fp16.onnx", fp16=True)
        model = fp16_model_checks(path)
        blob = blob_of(net)
        boxes, scores = engine_decoded(net, blob)
    evaluator = ReferenceEvaluator(model)
    first_conv = next(n.output[0] for n in model.graph.node if n.op_type == "Conv")
    got_boxes, got_scores, inner = evaluator.run(["boxes", "scores", first_conv], {"images": blob})
    assert inner.dtype == np.float16
    np.testing.assert_allclose(got_boxes, boxes, rtol=0, atol=1e-2)
    np.testing.assert_allclose(got_scores, scores, rtol=0, atol=1e-2)
    assert np.abs(got_boxes - boxes).max() > 1e-5  # float16 rounding shows: this is not float32


# --------------------------------------------------------------------------- layer options

OPTIONS_NET = """[net]
width=45
height=37
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=mish

# 1: stride 2 with explicit padding, no batch norm
[convolutional]
filters=12
size=3
stride=2
padding=2
activation=swish

# 2: grouped 1x1
[convolutional]
batch_normalize=1
filters=12
size=1
groups=4
activation=relu

# 3: size 2 stride 1 (yolov3-tiny): 0 left, 1 right
[maxpool]
size=2
stride=1

# 4: channel slice 1 of 3 of two layers
[route]
layers=2,-1
groups=3
group_id=1

# 5: size 3 stride 2: 1 left, 0 right
[maxpool]
size=3
stride=2

# 6: odd padding: the window starts at -1, the output size needs 2 more on the right
[maxpool]
size=3
stride=2
padding=3

[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
activation=logistic

[convolutional]
filters=6
size=1
stride=1
activation=linear

# 9: shortcut with an activation
[shortcut]
from=-2
activation=leaky

[convolutional]
batch_normalize=1
filters=14
size=1
activation=leaky

# 11
[yolo]
mask=0,1
anchors=4,5, 9,7, 16,12, 30,24
classes=2
num=4
scale_x_y=1.2

# 12: layer 5 up by 2 with a scale, beside layer 4
[route]
layers=5

[upsample]
stride=2
scale=0.5

[route]
layers=-1,4

[convolutional]
size=1
filters=14
activation=linear

[yolo]
mask=2,3
anchors=4,5, 9,7, 16,12, 30,24
classes=2
num=4
"""


def test_every_layer_option_equals_engine(tmp_path):
    """Activations, conv stride/padding/groups, maxpool padding rule, route groups, shortcut
    activation, upsample scale, scale_x_y present and absent: raw and decoded against the engine."""
    cfg = write_text(tmp_path / "options.cfg", OPTIONS_NET)
    weights = write_random_weights(cfg, tmp_path / "options.weights", seed=5)
    with dn.Network(cfg, weights, batch=2) as net:
        shapes = [layer.output_shape for layer in net.layers]
        assert shapes[3:7] == [(12, 20, 24), (8, 20, 24), (8, 10, 12), (8, 6, 7)]
        assert net.layers[4].groups == 3 and net.layers[4].group_id == 1
        assert net.layers[13].upsample_scale == 0.5
        blob = blob_of(net, 2, seed=4)
        every_layer = net.forward_layer_outputs(blob)
        raw = run_onnx(net.export_onnx(tmp_path / "raw.onnx", outputs="raw", batch=2), blob)
        decoded_path = net.export_onnx(tmp_path / "decoded.onnx", batch=2)
        check_graph(decoded_path, {"boxes": [2, candidates(net), 4], "scores": [2, candidates(net), 2]})
        decoded = run_onnx(decoded_path, blob)
        boxes, scores = engine_decoded(net, blob)
    np.testing.assert_allclose(raw["raw_0"], every_layer[10], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(raw["raw_1"], every_layer[15], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(decoded["boxes"], boxes, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(decoded["scores"], scores, rtol=0, atol=TOLERANCE)


def test_maxpool_pads_follow_darknet(tmp_path):
    """The MaxPool nodes carry darknet's window placement, e.g. yolov3-tiny's size 2 stride 1."""
    cfg = write_text(tmp_path / "options.cfg", OPTIONS_NET)
    with dn.Network(cfg) as net:
        model = build_model(net, outputs="raw")
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    pads = [list(next(a for a in n.attribute if a.name == "pads").ints) for n in pools]
    assert pads == [[0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 2, 2]]


# --------------------------------------------------------------------------- metadata


def test_metadata_tells_a_consumer_how_to_preprocess_and_label(tmp_path):
    cfg = tmp_path / "yolov4-320x192.cfg"
    dn.cfg.write_cfg(cfg, "yolov4", classes=2, width=320, height=192, letter_box=True)
    names = write_text(tmp_path / "crowdhuman.names", "head\nperson\n")
    path = dn.export_onnx(cfg, None, tmp_path / "m.onnx", names=names, outputs="raw")
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["width"], meta["height"], meta["channels"]) == ("320", "192", "3")
    assert json.loads(meta["letter_box"]) is True
    assert json.loads(meta["names"]) == ["head", "person"]
    assert meta["darknet_py_version"] == dn.__version__ and meta["outputs"] == "raw"
    assert json.loads(meta["scale_x_y"]) == pytest.approx([1.2, 1.1, 1.05])
    assert json.loads(meta["masks"]) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    anchors = json.loads(meta["anchors"])
    assert len(anchors) == 3 and all(len(a) == 9 and len(a[0]) == 2 for a in anchors)
    heads = json.loads(meta["heads"])
    assert [h["grid"] for h in heads] == [[24, 40], [12, 20], [6, 10]]
    assert meta["nms_kind"] == "greedynms"
    assert model.producer_name == "darknet_py" and model.opset_import[0].version == 17


def test_opset_choice(arch_files, tmp_path):
    cfg, weights = arch_files("yolov4-tiny", 320, 192)
    with dn.Network(cfg, weights) as net:
        for opset in (13, onnx.defs.onnx_opset_version()):
            path = net.export_onnx(tmp_path / f"o{opset}.onnx", opset=opset)
            model = onnx.load(str(path))
            assert model.opset_import[0].version == opset
            onnx.checker.check_model(model, full_check=True)
        blob = blob_of(net)
        np.testing.assert_allclose(run_onnx(tmp_path / "o13.onnx", blob)["scores"], engine_decoded(net, blob)[1],
                                   rtol=0, atol=TOLERANCE)


# --------------------------------------------------------------------------- bad input


def test_an_option_onnx_cannot_express_names_layer_and_option(tmp_path):
    cfg = write_text(tmp_path / "wide-pool.cfg", "[net]\nwidth=32\nheight=32\nchannels=3\n\n"
                     "[maxpool]\nsize=2\nstride=2\npadding=4\n\n"
                     "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                     "[yolo]\nmask=0,1\nanchors=4,5, 9,7\nclasses=2\nnum=2\n")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"earlier export")
    with pytest.raises(dn.ExportError, match=r"layer 0 \[maxpool\] \(cfg line 6\): padding=4"):
        dn.export_onnx(cfg, None, out)
    assert out.read_bytes() == b"earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "wide-pool.cfg"]


def test_a_route_that_reads_a_yolo_layer_is_refused(tmp_path):
    cfg = write_text(tmp_path / "reads-yolo.cfg", "[net]\nwidth=32\nheight=32\nchannels=3\n\n"
                     "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                     "[yolo]\nmask=0,1\nanchors=4,5, 9,7\nclasses=2\nnum=2\n\n"
                     "[route]\nlayers=-1\n\n"
                     "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                     "[yolo]\nmask=0,1\nanchors=4,5, 9,7\nclasses=2\nnum=2\n")
    with pytest.raises(dn.ExportError, match=r"layer 2 \[route\].*reads the output of layer 1 \[yolo\]"):
        dn.export_onnx(cfg, None, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_heads_with_different_class_counts_need_raw(tmp_path):
    cfg = write_text(tmp_path / "mixed.cfg", "[net]\nwidth=32\nheight=32\nchannels=3\n\n"
                     "[convolutional]\nfilters=12\nsize=1\nactivation=linear\n\n"
                     "[yolo]\nmask=0,1\nanchors=4,5, 9,7\nclasses=1\nnum=2\n\n"
                     "[route]\nlayers=-2\n\n"
                     "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                     "[yolo]\nmask=0,1\nanchors=4,5, 9,7\nclasses=2\nnum=2\n")
    with pytest.raises(dn.ExportError, match=r"layer 1 \[yolo\].*classes=1.*outputs='raw'"):
        dn.export_onnx(cfg, None, tmp_path / "m.onnx")
    path = dn.export_onnx(cfg, None, tmp_path / "m.onnx", outputs="raw")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_unwritable_output_path_leaves_nothing(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny", 320, 192)
    blocker = write_text(tmp_path / "not-a-directory", "a file")
    with pytest.raises(dn.DarknetIOError, match="not-a-directory/model.onnx: cannot write the ONNX model"):
        dn.export_onnx(cfg, weights, blocker / "model.onnx")
    with pytest.raises(dn.DarknetIOError, match="no-such-dir/model.onnx"):
        dn.export_onnx(cfg, weights, tmp_path / "no-such-dir" / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-directory"]


def test_bad_arguments(arch_files, tmp_path):
    cfg, weights = arch_files("yolov3-tiny", 320, 192)
    with dn.Network(cfg, weights) as net:
        for kwargs, message in (({"opset": 12}, "opset must be an integer in"), ({"batch": 0}, "batch must be"),
                                ({"outputs": "nms"}, "outputs must be one of")):
            with pytest.raises(dn.ShapeError, match=message):
                net.export_onnx(tmp_path / "m.onnx", **kwargs)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(dn.StateError):
        net.export_onnx(tmp_path / "m.onnx")


def test_missing_onnx_package_says_how_to_install(arch_files, tmp_path, monkeypatch):
    cfg, weights = arch_files("yolov3-tiny", 320, 192)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(dn.MissingDependencyError, match=r'pip install "darknet_py\[onnx\]"') as info:
        dn.export_onnx(cfg, weights, tmp_path / "m.onnx")
    assert isinstance(info.value, ImportError) and isinstance(info.value, dn.DarknetError)
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- command line


def test_cli_export(arch_files, tmp_path):
    cfg, weights = arch_files("yolov4-tiny", 320, 192)
    cli = [sys.executable, "-m", "darknet_py.cli", "export"]
    done = subprocess.run(cli + [str(cfg), str(weights), "-o", str(tmp_path / "cli.onnx"), "--dynamic-batch",
                                 "--opset", "16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "cli.onnx") in done.stdout
    model = onnx.load(str(tmp_path / "cli.onnx"))
    assert model.opset_import[0].version == 16
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    # default path: beside the weights, named after them; --raw --fp16
    done = subprocess.run(cli + [str(cfg), str(weights), "--raw", "--fp16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(weights.with_suffix(".onnx")))
    assert [o.name for o in model.graph.output] == ["raw_0", "raw_1"]
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "float16"
    weights.with_suffix(".onnx").unlink()

    done = subprocess.run(cli + [str(cfg), str(weights), "-o", str(tmp_path / "x" / "m.onnx")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "cannot write the ONNX model" in done.stderr
    done = subprocess.run(cli + [str(cfg), str(weights), "--opset", "nine"], capture_output=True, text=True)
    assert done.returncode == 2


# --------------------------------------------------------------------------- the documented recipe


def load_example(name: str):  # noqa: ANN201 - a module
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def recipe_detections(model_path: Path, images: list[np.ndarray], thresh: float, nms: float) -> list[list[tuple]]:
    deploy = load_example("deploy_onnxruntime")
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    info = deploy.ModelInfo.of(session)
    found = []
    for image in images:
        boxes, scores = session.run(["boxes", "scores"], {"images": deploy.preprocess(image, info)})
        found.append(deploy.postprocess(boxes[0], scores[0], image.shape[1], image.shape[0], info, thresh, nms))
    return found


def assert_same_detections(ours: list[dn.Detection], recipe: list[tuple]) -> None:
    assert len(ours) == len(recipe)
    ours = sorted(ours, key=lambda d: (d.class_id, -d.confidence))
    recipe = sorted(recipe, key=lambda d: (d[0], -d[2]))
    for det, (class_id, name, confidence, x1, y1, x2, y2) in zip(ours, recipe):
        assert (det.class_id, det.name) == (class_id, name)
        assert det.confidence == pytest.approx(confidence, abs=1e-4)
        np.testing.assert_allclose(det.xyxy, (x1, y1, x2, y2), rtol=0, atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("letter_box", [False, True])
def test_recipe_on_a_trained_network_gives_detects_detections(trained_demo, tmp_path, letter_box):
    """The README's ONNX Runtime recipe (examples/deploy_onnxruntime.py: preprocessing, thresholds,
    darknet's NMS) on the demo's trained detector, on held-out images, equals Network.detect."""
    import cv2

    from darknet_py.datafile import read_image_list

    cfg = trained_demo.cfg_file
    if letter_box:
        cfg = write_text(tmp_path / "letterbox.cfg", cfg.read_text().replace("[net]\n", "[net]\nletter_box=1\n", 1))
    names = ["head", "person"]
    held_out = read_image_list(trained_demo.data_file.parent / "test.txt")[:20]
    images = [cv2.imread(str(p)) for p in held_out]
    path = dn.export_onnx(cfg, trained_demo.weights, tmp_path / "trained.onnx", names=names)
    for thresh in (0.25, 0.05):
        with dn.Network(cfg, trained_demo.weights, names=names) as net:
            assert net.letter_box is letter_box
            ours = [net.detect(image, thresh=thresh, nms=0.45) for image in images]
        recipe = recipe_detections(path, images, thresh, 0.45)
        assert sum(len(d) for d in ours) >= len(images)  # the trained detector finds things
        for mine, theirs in zip(ours, recipe):
            assert_same_detections(mine, theirs)
