"""ONNX export: the network the engine runs, rebuilt layer by layer as an ONNX graph.

The graph is made from the same parsed network (`Network.layers`) and the same parameters
(`Network.get_parameter`) the engine computes with, using the `onnx` package's helpers
(`pip install "darknet_py[onnx]"`).

Input: `images`, float32 (N, C, H, W), RGB in [0, 1], resized or letterboxed as darknet does
(`darknet_py.detect.preprocess`; the model's metadata says which).

Outputs, `outputs="decoded"` (the default):
  `boxes`  float32 (N, B, 4): x1, y1, x2, y2 relative to the network input (0..1);
  `scores` float32 (N, B, classes): objectness x class probability.
  B = sum over [yolo] heads of masks x h x w. Candidates are ordered head by head in cfg order,
  then by anchor (mask order), then row, then column: candidate
  `offset(head) + (a * h + row) * w + col`. NMS is left to the consumer (see the README).
`outputs="raw"`: `raw_0`, `raw_1`, ... one per [yolo] head, each that head's input tensor
(N, masks * (5 + classes), h, w) before darknet's yolo activation, for decoders of their own
(TensorRT yolo plugins).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np

from ._atomic import replacing
from ._typing import PathLike
from .errors import DarknetIOError, ExportError, MissingDependencyError, ShapeError

if TYPE_CHECKING:  # pragma: no cover
    from .network import LayerInfo, Network

OutputKind = Literal["decoded", "raw"]
OUTPUT_KINDS = ("decoded", "raw")
MIN_OPSET = 13            # Resize without roi, Slice/Reshape with tensor inputs
DEFAULT_OPSET = 17
BN_EPSILON = 1e-5         # darknet's batch norm: (x - mean) / sqrt(var + 1e-5)
LEAKY_SLOPE = 0.1
INPUT_NAME = "images"
BATCH_DIM = "batch"
INSTALL_HINT = 'pip install "darknet_py[onnx]"'


def _import_onnx():  # noqa: ANN202 - the onnx module
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from exc
    return onnx


@dataclass
class _Graph:
    """Nodes and initializers being collected; tensor names are unique by construction."""

    onnx: object
    dtype: np.dtype                     # float32, or float16 for fp16 exports
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    counter: int = 0

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def const(self, stem: str, value: np.ndarray, dtype: Optional[np.dtype] = None) -> str:
        name = self.name(stem)
        array = np.asarray(value, dtype=dtype if dtype is not None else self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, stem: str, values) -> str:  # noqa: ANN001 - a sequence of ints
        return self.const(stem, np.asarray(values, dtype=np.int64), np.int64)

    def op(self, op_type: str, inputs: list[str], stem: str, *, output: Optional[str] = None, **attributes) -> str:
        out = output or self.name(stem)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=f"{stem}_{op_type}_{self.counter}",
                                                     **attributes))
        return out


def _where(layer: "LayerInfo") -> str:
    return f"layer {layer.index} [{layer.type}] (cfg line {layer.cfg_line})"


def _activation(g: _Graph, x: str, activation: Optional[str], stem: str) -> str:
    """darknet's activations with standard ONNX operators (opset 13+)."""
    if activation in (None, "linear"):
        return x
    if activation == "leaky":
        return g.op("LeakyRelu", [x], stem, alpha=LEAKY_SLOPE)
    if activation == "relu":
        return g.op("Relu", [x], stem)
    if activation == "logistic":
        return g.op("Sigmoid", [x], stem)
    if activation == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x], stem)], stem)
    if activation == "mish":  # x * tanh(softplus(x)); the Mish operator needs opset 18 and many runtimes lack it
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x], stem)], stem)], stem)
    raise ExportError(f"activation {activation!r} has no ONNX form")


def _folded_conv(net: "Network", layer: "LayerInfo") -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias with batch norm folded in exactly as darknet computes it, in float64."""
    weights = net.get_parameter(layer.index, "weights").astype(np.float64)
    bias = net.get_parameter(layer.index, "biases").astype(np.float64)
    if layer.batch_normalize:
        scales = net.get_parameter(layer.index, "scales").astype(np.float64)
        mean = net.get_parameter(layer.index, "rolling_mean").astype(np.float64)
        variance = net.get_parameter(layer.index, "rolling_variance").astype(np.float64)
        factor = scales / np.sqrt(variance + BN_EPSILON)
        weights = weights * factor[:, None, None, None]
        bias = bias - mean * factor
    return weights, bias


def _maxpool_pads(layer: "LayerInfo") -> tuple[int, int, int, int]:
    """(top, left, bottom, right) so that ONNX MaxPool equals darknet's: the window starts at
    -padding/2 and pixels outside the input are ignored (-inf padding); the output size is
    darknet's (in + padding - size) / stride + 1."""
    _, in_h, in_w = layer.input_shape
    _, out_h, out_w = layer.output_shape
    begin = layer.pad // 2
    end_h = max(0, (out_h - 1) * layer.stride + layer.size - in_h - begin)
    end_w = max(0, (out_w - 1) * layer.stride + layer.size - in_w - begin)
    for name, pad in (("padding/2", begin), ("bottom", end_h), ("right", end_w)):
        if pad >= layer.size:
            raise ExportError(f"{_where(layer)}: padding={layer.pad} puts whole size={layer.size} windows outside "
                              f"the input ({name} pad {pad}); ONNX MaxPool needs pads smaller than the kernel")
    for axis, size, pad_end, expected in (("height", in_h, end_h, out_h), ("width", in_w, end_w, out_w)):
        produced = (size + begin + pad_end - layer.size) // layer.stride + 1
        if produced != expected:  # cannot happen with darknet's arithmetic; guards the derivation above
            raise ExportError(f"{_where(layer)}: MaxPool would give {axis} {produced}, darknet gives {expected}")
    return begin, begin, end_h, end_w


def _layer_node(g: _Graph, net: "Network", layer: "LayerInfo", tensors: list[str], x: str) -> str:
    """The ONNX nodes of one layer; returns the name of its output tensor."""
    stem = f"l{layer.index}"
    if layer.type == "convolutional":
        weights, bias = _folded_conv(net, layer)
        y = g.op("Conv", [x, g.const(f"{stem}_w", weights), g.const(f"{stem}_b", bias)], stem,
                 kernel_shape=[layer.size, layer.size], strides=[layer.stride, layer.stride],
                 pads=[layer.pad] * 4, group=layer.groups)
        return _activation(g, y, layer.activation, stem)
    if layer.type == "maxpool":
        top, left, bottom, right = _maxpool_pads(layer)
        return g.op("MaxPool", [x], stem, kernel_shape=[layer.size, layer.size], strides=[layer.stride, layer.stride],
                    pads=[top, left, bottom, right])
    if layer.type == "route":
        parts = []
        for index in layer.inputs:
            source = net.layers[index]
            _check_readable(layer, source)
            part = tensors[index]
            if layer.groups > 1:  # channel slice group_id of groups, per input
                width = source.output_shape[0] // layer.groups
                start = width * layer.group_id
                part = g.op("Slice", [part, g.ints(f"{stem}_start", [start]), g.ints(f"{stem}_end", [start + width]),
                                      g.ints(f"{stem}_axis", [1])], stem)
            parts.append(part)
        return parts[0] if len(parts) == 1 else g.op("Concat", parts, stem, axis=1)
    if layer.type == "shortcut":
        source = net.layers[layer.inputs[0]]
        _check_readable(layer, source)
        y = g.op("Add", [x, tensors[source.index]], stem)
        return _activation(g, y, layer.activation, stem)
    if layer.type == "upsample":
        s = float(layer.stride)
        y = g.op("Resize", [x, "", g.const(f"{stem}_scales", [1.0, 1.0, s, s], np.float32)], stem,
                 mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        if layer.upsample_scale != 1.0:
            y = g.op("Mul", [y, g.const(f"{stem}_scale", np.asarray(layer.upsample_scale))], stem)
        return y
    if layer.type == "yolo":
        return x  # decoded (or passed through raw) at the end; nothing reads a [yolo] output (checked)
    raise ExportError(f"{_where(layer)}: layer type {layer.type!r} has no ONNX form")


def _check_readable(reader: "LayerInfo", source: "LayerInfo") -> None:
    if source.type == "yolo":
        raise ExportError(f"{_where(reader)} reads the output of {_where(source)}; the export gives [yolo] "
                          f"layers only as graph outputs")


def _decode_head(g: _Graph, net: "Network", head: "LayerInfo", x: str) -> tuple[str, str]:
    """boxes (N, masks*h*w, 4) x1 y1 x2 y2 relative to the input and scores (N, masks*h*w, classes)
    of one [yolo] head, from its input x (N, masks*(5+classes), h, w), in float32."""
    stem = f"yolo{head.index}"
    masks, classes = len(head.mask), head.classes
    _, h, w = head.output_shape
    f32 = np.float32
    cells = g.op("Reshape", [x, g.ints(f"{stem}_shape", [0, masks, 5 + classes, h * w])], stem)
    cells = g.op("Transpose", [cells], stem, perm=[0, 1, 3, 2])                       # (N, masks, h*w, 5+classes)

    def take(start: int, end: int) -> str:
        return g.op("Slice", [cells, g.ints(f"{stem}_start", [start]), g.ints(f"{stem}_end", [end]),
                              g.ints(f"{stem}_axis", [3])], stem)

    xy = g.op("Sigmoid", [take(0, 2)], stem)
    s = head.scale_x_y
    if s != 1.0:  # darknet: x' = logistic(x) * s - (s - 1) / 2
        xy = g.op("Add", [g.op("Mul", [xy, g.const(f"{stem}_sxy", np.asarray(s), f32)], stem),
                          g.const(f"{stem}_shift", np.asarray(-0.5 * (s - 1.0)), f32)], stem)
    rows, cols = np.divmod(np.arange(h * w), w)
    grid = np.stack([cols, rows], axis=1).reshape(1, 1, h * w, 2)
    centre = g.op("Div", [g.op("Add", [xy, g.const(f"{stem}_grid", grid, f32)], stem),
                          g.const(f"{stem}_cells", np.asarray([w, h]), f32)], stem)
    anchors = np.asarray(head.anchors, dtype=np.float64)[list(head.mask)] / np.asarray([net.width, net.height])
    size = g.op("Mul", [g.op("Exp", [take(2, 4)], stem), g.const(f"{stem}_anchors", anchors.reshape(1, masks, 1, 2), f32)],
                stem)
    half = g.op("Mul", [size, g.const(f"{stem}_half", np.asarray(0.5), f32)], stem)
    corners = g.op("Concat", [g.op("Sub", [centre, half], stem), g.op("Add", [centre, half], stem)], stem, axis=3)
    boxes = g.op("Reshape", [corners, g.ints(f"{stem}_boxes_shape", [0, masks * h * w, 4])], stem)
    probability = g.op("Mul", [g.op("Sigmoid", [take(4, 5)], stem), g.op("Sigmoid", [take(5, 5 + classes)], stem)], stem)
    scores = g.op("Reshape", [probability, g.ints(f"{stem}_scores_shape", [0, masks * h * w, classes])], stem)
    return boxes, scores


def _metadata(net: "Network", outputs: OutputKind, fp16: bool, version: str) -> dict[str, str]:
    heads = net.yolo_layers
    last = heads[-1] if heads else None
    return {
        "darknet_py_version": version,
        "source_cfg": net.cfg_path.name,
        "width": str(net.width),
        "height": str(net.height),
        "channels": str(net.channels),
        "letter_box": json.dumps(bool(net.letter_box)),
        "input": "images: float32 (N, C, H, W), RGB, values in [0, 1]; resized to width x height, or letterboxed "
                 "on 0.5 grey when letter_box is true",
        "outputs": outputs,
        "box_format": "x1, y1, x2, y2 relative to the network input",
        "precision": "float16" if fp16 else "float32",
        "classes": str(net.classes),
        "names": json.dumps(list(net.names)),
        "heads": json.dumps([{"layer": h.index, "grid": list(h.output_shape[1:]), "classes": h.classes,
                              "mask": list(h.mask), "anchors": [list(a) for a in h.anchors],
                              "scale_x_y": h.scale_x_y} for h in heads]),
        "anchors": json.dumps([[list(a) for a in h.anchors] for h in heads]),
        "masks": json.dumps([list(h.mask) for h in heads]),
        "scale_x_y": json.dumps([h.scale_x_y for h in heads]),
        "nms_kind": last.nms_kind if last else "default",
        "beta_nms": str(last.beta_nms if last else 0.6),
    }


def build_model(net: "Network", *, opset: int = DEFAULT_OPSET, batch: int = 1, dynamic_batch: bool = False,
                outputs: OutputKind = "decoded", fp16: bool = False):  # noqa: ANN201 - an onnx.ModelProto
    """The ONNX model of `net` (see the module docstring for inputs and outputs)."""
    from . import __version__

    onnx = _import_onnx()
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= latest:
        raise ShapeError(f"opset must be an integer in [{MIN_OPSET}, {latest}] (this onnx package), got {opset!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ShapeError(f"batch must be a positive integer, got {batch!r}")
    if outputs not in OUTPUT_KINDS:
        raise ShapeError(f"outputs must be one of {OUTPUT_KINDS}, got {outputs!r}")
    heads = net.yolo_layers
    if not heads:
        raise ExportError(f"{net.cfg_path}: no [yolo] layer; there is nothing to export as detector outputs")
    if outputs == "decoded" and any(h.classes != heads[-1].classes for h in heads):
        odd = next(h for h in heads if h.classes != heads[-1].classes)
        raise ExportError(f"{_where(odd)}: classes={odd.classes} differs from the last [yolo]'s "
                          f"{heads[-1].classes}; decoded scores need one class count (export with outputs='raw')")

    g = _Graph(onnx=onnx, dtype=np.dtype(np.float16 if fp16 else np.float32))
    x = INPUT_NAME
    if fp16:
        x = g.op("Cast", [x], "input", to=onnx.TensorProto.FLOAT16)
    tensors: list[str] = []
    for layer in net.layers:
        x = _layer_node(g, net, layer, tensors, x)
        tensors.append(x)

    head_inputs = []
    for head in heads:
        y = tensors[head.index]
        if fp16:  # decode (and hand out) in float32: grid offsets up to ~76 lose precision in float16
            y = g.op("Cast", [y], f"yolo{head.index}", to=onnx.TensorProto.FLOAT)
        head_inputs.append(y)

    batch_dim = BATCH_DIM if dynamic_batch else int(batch)
    float32 = onnx.TensorProto.FLOAT
    if outputs == "raw":
        graph_outputs = []
        for k, (head, y) in enumerate(zip(heads, head_inputs)):
            name = f"raw_{k}"
            g.op("Identity", [y], name, output=name)
            graph_outputs.append(onnx.helper.make_tensor_value_info(name, float32, [batch_dim, *head.output_shape]))
    else:
        decoded = [_decode_head(g, net, head, y) for head, y in zip(heads, head_inputs)]
        total = sum(len(h.mask) * h.output_shape[1] * h.output_shape[2] for h in heads)
        for name, index, width in (("boxes", 0, 4), ("scores", 1, heads[-1].classes)):
            parts = [d[index] for d in decoded]
            g.op("Concat" if len(parts) > 1 else "Identity", parts, name, output=name,
                 **({"axis": 1} if len(parts) > 1 else {}))
        graph_outputs = [onnx.helper.make_tensor_value_info("boxes", float32, [batch_dim, total, 4]),
                         onnx.helper.make_tensor_value_info("scores", float32, [batch_dim, total, heads[-1].classes])]

    graph_input = onnx.helper.make_tensor_value_info(INPUT_NAME, float32, [batch_dim, net.channels, net.height,
                                                                           net.width])
    graph = onnx.helper.make_graph(g.nodes, Path(net.cfg_path).stem, [graph_input], graph_outputs, g.initializers)
    opset_ids = [onnx.helper.make_opsetid("", int(opset))]
    model = onnx.helper.make_model(graph, opset_imports=opset_ids, producer_name="darknet_py",
                                   producer_version=__version__,
                                   doc_string=f"{net.cfg_path.name} exported by darknet_py {__version__}")
    # The oldest IR that carries this opset, so that older runtimes (TensorRT on a Jetson) load it.
    model.ir_version = onnx.helper.find_min_ir_version_for(opset_ids)
    onnx.helper.set_model_props(model, _metadata(net, outputs, fp16, __version__))
    return model


def save_model(model, path: PathLike) -> Path:  # noqa: ANN001 - an onnx.ModelProto
    """Write `model` to `path` atomically (a temporary file beside it, then a rename)."""
    onnx = _import_onnx()
    path = Path(path)
    try:
        with replacing(path) as temporary:
            onnx.save_model(model, str(temporary))
    except OSError as exc:
        raise DarknetIOError(f"{path}: cannot write the ONNX model: {exc.strerror or exc}") from exc
    return path


def export_network(net: "Network", path: PathLike, *, opset: int = DEFAULT_OPSET, batch: int = 1,
                   dynamic_batch: bool = False, outputs: OutputKind = "decoded", fp16: bool = False) -> Path:
    """Build the ONNX model of `net` and write it to `path`; returns the path."""
    model = build_model(net, opset=opset, batch=batch, dynamic_batch=dynamic_batch, outputs=outputs, fp16=fp16)
    return save_model(model, path)


def export_onnx(cfg: PathLike, weights: Optional[PathLike], path: PathLike, *, opset: int = DEFAULT_OPSET,
                batch: int = 1, dynamic_batch: bool = False, outputs: OutputKind = "decoded", fp16: bool = False,
                names=None) -> Path:  # noqa: ANN001 - names as for Network
    """Export a darknet cfg + .weights to an ONNX file at `path` (see the module docstring).

    opset: ONNX opset (13 or newer); batch: the fixed batch dimension, or `dynamic_batch=True` for
    a symbolic one; outputs: "decoded" (boxes + scores) or "raw" (each [yolo] head's input);
    fp16: weights and computation in float16 (input and outputs stay float32). `names` (a list or
    a .names file) goes into the model's metadata. Nothing is left at `path` when this fails.
    """
    from .network import Network

    _import_onnx()  # fail before loading a large network
    with Network(cfg, weights, names=names) as net:
        return export_network(net, path, opset=opset, batch=batch, dynamic_batch=dynamic_batch, outputs=outputs,
                              fp16=fp16)
