"""`Network`: a darknet cfg (+ .weights) loaded into the engine, with forward and detect."""
from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np

from ._atomic import replacing
from ._typing import PathLike
from . import detect as _detect
from ._engine import as_float_buffer, check, ffi, lib
from .datafile import read_names
from .errors import DarknetIOError, ShapeError, StateError
from .names import ACTIVATIONS, IOU_LOSSES, LAYER_TYPES, LR_POLICIES, NMS_KINDS, PRECISIONS


@dataclass(frozen=True)
class TrainStats:
    """What the [yolo] layers measured in one training step."""

    loss: float        # mean over [yolo] layers of each layer's cost per image
    avg_iou: float     # mean IoU of the predictions assigned to truths
    avg_obj: float     # mean objectness at those predictions
    avg_class: float   # mean probability of the true class there
    recall50: float
    recall75: float
    iou_loss: float
    class_loss: float
    count: int         # truths assigned to predictions


class DarknetWarning(UserWarning):
    """A problem the engine reported without failing (for example an unknown cfg option)."""


@ffi.def_extern()
def dn_py_log(user, level, message):  # noqa: ANN001 - called by the engine through cffi
    text = ffi.string(message).decode("utf-8", "replace")
    if level >= lib.DN_LOG_WARNING:
        warnings.warn(text, DarknetWarning, stacklevel=4)


GpuChoice = Union[None, int, Literal["auto"]]


def precision_supported(precision: str) -> bool:
    """Whether this CPU runs Network(precision=...): "fp32" always, "bf16" with AVX512-BF16."""
    return bool(lib.dn_precision_supported(_precision_value(precision)))


def bf16_backend() -> str:
    """What runs precision="bf16": "oneDNN 3.2.0" in a build made with DARKNET_PY_ONEDNN=1 (the
    whole network as one oneDNN graph, every convolution in bf16, values between layers in bf16),
    else the engine's own bf16 GEMM kernel on this CPU, "darknet_py (AMX)" (AMX-BF16 tiles) or
    "darknet_py (AVX512-BF16)" (3x3 stride-1 layers on Winograd stay fp32, on AVX512-BF16 all
    but the widest: see Network), or "darknet_py" where the CPU runs no bf16
    (precision_supported("bf16") is False)."""
    version = int(lib.dn_onednn_version())
    if version:
        return f"oneDNN {version // 10000}.{version // 100 % 100}.{version % 100}"
    kernel = lib.dn_cpu_bf16_kernel()
    return "darknet_py" if kernel == ffi.NULL else f"darknet_py ({ffi.string(kernel).decode()})"


def _precision_value(precision: str) -> int:
    if precision not in PRECISIONS:
        raise ShapeError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    return PRECISIONS.index(precision)


def gpu_available() -> bool:
    """True when darknet_py was built with CUDA (DARKNET_PY_GPU=1) and a CUDA device is usable."""
    return bool(lib.dn_gpu_available())


def gpu_count() -> int:
    """CUDA devices usable by darknet_py (0 in a CPU build or without a driver)."""
    return int(lib.dn_gpu_count())


def gpu_status() -> str:
    """Whether a CUDA device is usable, and if not why, in one sentence: "1 CUDA device (driver
    CUDA 13.0, runtime CUDA 13.0)", "no NVIDIA driver: ...", "the NVIDIA driver is too old: ...",
    "no CUDA device: ...", or that darknet_py was built without CUDA."""
    buf = ffi.new("char[]", 512)
    lib.dn_gpu_status(buf, len(buf))
    return ffi.string(buf).decode("utf-8", "replace")


def _resolve_gpu(gpu: GpuChoice) -> int:
    """The device index for Network(gpu=...): -1 for the CPU."""
    if gpu is None:
        return -1
    if isinstance(gpu, str):
        if gpu != "auto":
            raise ShapeError(f"gpu must be None, 'auto' or a device index, got {gpu!r}")
        if lib.dn_gpu_available():
            return 0
        warnings.warn(f"gpu='auto': {gpu_status()}; running on the CPU", DarknetWarning, stacklevel=3)
        return -1
    if isinstance(gpu, bool) or not isinstance(gpu, (int, np.integer)) or gpu < 0:
        raise ShapeError(f"gpu must be None, 'auto' or a device index >= 0, got {gpu!r}")
    return int(gpu)


@dataclass(frozen=True)
class NetParams:
    """The cfg's [net] section. Sizes in network pixels."""

    batch: int
    subdivisions: int
    width: int
    height: int
    channels: int
    momentum: float
    decay: float
    learning_rate: float
    burn_in: int
    power: float
    max_batches: int
    policy: str
    steps: tuple[int, ...]
    scales: tuple[float, ...]
    angle: float
    saturation: float
    exposure: float
    hue: float
    mosaic: bool
    flip: bool
    letter_box: bool


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the network. Shapes are per image, (channels, height, width)."""

    index: int
    type: str
    cfg_line: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    filters: int = 0
    size: int = 0
    stride: int = 0
    pad: int = 0
    groups: int = 0            # convolutional: groups; route: groups (channel slices of each input)
    group_id: int = 0          # route: which slice
    upsample_scale: float = 1.0
    batch_normalize: bool = False
    activation: Optional[str] = None
    stopbackward: int = 0
    inputs: tuple[int, ...] = ()
    classes: int = 0
    mask: tuple[int, ...] = ()
    anchors: tuple[tuple[float, float], ...] = ()
    scale_x_y: float = 1.0
    nms_kind: Optional[str] = None
    beta_nms: float = 0.0
    ignore_thresh: float = 0.0
    iou_loss: Optional[str] = None
    jitter: float = 0.0
    random: bool = False
    resize: float = 1.0
    max_boxes: int = 0


def _layer_info(index: int, raw) -> LayerInfo:  # noqa: ANN001 - a cffi struct
    kind = LAYER_TYPES[raw.type]
    common = dict(
        index=index,
        type=kind,
        cfg_line=raw.cfg_line,
        input_shape=(raw.c, raw.h, raw.w),
        output_shape=(raw.out_c, raw.out_h, raw.out_w),
    )
    if kind == "convolutional":
        return LayerInfo(
            **common, filters=raw.filters, size=raw.size, stride=raw.stride, pad=raw.pad, groups=raw.groups,
            batch_normalize=bool(raw.batch_normalize), activation=ACTIVATIONS[raw.activation],
            stopbackward=raw.stopbackward,
        )
    if kind == "maxpool":
        return LayerInfo(**common, size=raw.size, stride=raw.stride, pad=raw.pad)
    if kind == "upsample":
        return LayerInfo(**common, stride=raw.stride, upsample_scale=float(raw.upsample_scale))
    if kind in ("route", "shortcut"):
        activation = ACTIVATIONS[raw.activation] if kind == "shortcut" else None
        return LayerInfo(**common, inputs=tuple(raw.inputs[0:raw.num_inputs]), activation=activation,
                         groups=raw.route_groups if kind == "route" else 0,
                         group_id=raw.route_group_id if kind == "route" else 0)
    anchors = tuple((float(raw.anchors[2 * i]), float(raw.anchors[2 * i + 1])) for i in range(raw.total_anchors))
    return LayerInfo(
        **common, classes=raw.classes, mask=tuple(raw.mask[0:raw.num_masks]), anchors=anchors,
        scale_x_y=float(raw.scale_x_y), nms_kind=NMS_KINDS[raw.nms_kind], beta_nms=float(raw.beta_nms),
        ignore_thresh=float(raw.ignore_thresh), iou_loss=IOU_LOSSES[raw.iou_loss], jitter=float(raw.jitter),
        random=bool(raw.random), resize=float(raw.resize), max_boxes=raw.max_boxes,
    )


THREADS_VARIABLE = "DARKNET_PY_THREADS"
MAX_THREADS = 1024  # the engine's DN_MAX_THREADS


def resolve_threads(threads: Optional[int] = None) -> int:
    """The engine's thread count: `threads` when given, else the DARKNET_PY_THREADS environment
    variable, else the CPUs this process may run on (its affinity mask, as a container or
    `taskset` sets it)."""
    where = "threads"
    if threads is None:
        text = os.environ.get(THREADS_VARIABLE, "").strip()
        if not text:
            try:
                return max(1, len(os.sched_getaffinity(0)))
            except (AttributeError, OSError):
                return max(1, os.cpu_count() or 1)
        where = THREADS_VARIABLE
        try:
            threads = int(text)
        except ValueError:
            raise ShapeError(f"{THREADS_VARIABLE}={text[:40]!r} is not a whole number of threads") from None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ShapeError(f"{where} must be a whole number in [1, {MAX_THREADS}], got {threads!r}")
    return int(threads)


def partial(cfg: PathLike, weights: PathLike, out: PathLike, layers: int) -> Path:
    """darknet's `./darknet partial CFG WEIGHTS OUT N`: the parameters of the first `layers`
    layers of `weights` (read through `cfg`) written to `out`, with `seen` = 0."""
    with Network(cfg, weights) as net:
        return net.save_weights(out, layers=layers)


class Network:
    """A darknet network held by the C engine.

    `cfg` is a darknet .cfg file; `weights` an optional .weights file (a partial file such as
    `yolov4.conv.137` fills the layers it holds, the rest keep darknet's random initialisation,
    drawn from `seed`). `batch` is the most images one engine call takes; larger inputs are split.
    `names` is a list of class names or a .names file. The network is guarded by a lock, so one
    instance may be shared by threads (calls are serialised); use one per thread for parallelism.

    `gpu` (a CUDA build of darknet_py only): None runs on the CPU; an int runs on that CUDA
    device, and raises StateError when there is none usable (or the build has no CUDA);
    "auto" takes device 0 when one is usable, else runs on the CPU with a DarknetWarning.
    Weights live on the device; results are the same arrays as on the CPU (to float rounding).

    `threads`: the threads of the CPU passes (default: DARKNET_PY_THREADS, else every CPU this
    process may use; see resolve_threads). The BLAS runs inside them, single-threaded. Results
    are reproducible for a given count; another count may change the last bits of floats.

    `precision`: of the inference forward (forward, detect, evaluate) on the CPU. "fp32", or
    "bf16": the convolutions round their weights and inputs to bfloat16 and sum the products in
    fp32, as OpenVINO's bf16 does. In the default build the 3x3 stride-1 layers on Winograd
    (whose transforms would magnify the rounding) stay fp32, except on the AVX512-BF16 kernel
    those with at least 256x512 weights (run in bf16 without im2col); a oneDNN build
    (bf16_backend() says) runs every layer on oneDNN, in bf16 between layers too. It needs a CPU
    with AVX512-BF16 (precision_supported("bf16") says; elsewhere StateError) and the CPU, not a
    GPU. Training steps always run in fp32.
    """

    def __init__(
        self,
        cfg: PathLike,
        weights: Optional[PathLike] = None,
        batch: int = 1,
        *,
        names: Union[None, PathLike, Sequence[str]] = None,
        seed: int = 0,
        gpu: GpuChoice = None,
        threads: Optional[int] = None,
        precision: str = "fp32",
    ) -> None:
        self._handle_ptr = None
        self._lock = threading.Lock()
        if not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ShapeError(f"batch must be a positive integer, got {batch!r}")
        self.cfg_path = Path(cfg)
        if not self.cfg_path.is_file():
            raise DarknetIOError(f"{self.cfg_path}: cfg file not found")
        self._log_handle = ffi.new_handle(self)
        out = ffi.new("dn_network **")
        check(lib.dn_network_create(os.fsencode(self.cfg_path), int(batch), int(seed) & (2**64 - 1),
                                    lib.dn_py_log, self._log_handle, out))
        self._handle_ptr = out[0]
        try:
            check(lib.dn_network_set_threads(self._handle_ptr, resolve_threads(threads)))
            device = _resolve_gpu(gpu)
            if device >= 0:  # before the weights: they are then copied to the device once
                check(lib.dn_network_use_gpu(self._handle_ptr, device))
            check(lib.dn_network_set_precision(self._handle_ptr, _precision_value(precision)))
            self._read_structure()
            self.layers_loaded = 0
            if weights is not None:
                self.load_weights(weights)
            self.names = self._resolve_names(names)
        except BaseException:
            self.close()
            raise

    # ---- structure ----
    def _read_structure(self) -> None:
        params = ffi.new("dn_net_params *")
        check(lib.dn_network_params(self._handle_ptr, params))
        p = params[0]
        self.params = NetParams(
            batch=p.batch, subdivisions=p.subdivisions, width=p.width, height=p.height, channels=p.channels,
            momentum=float(p.momentum), decay=float(p.decay), learning_rate=float(p.learning_rate),
            burn_in=p.burn_in, power=float(p.power), max_batches=p.max_batches, policy=LR_POLICIES[p.policy],
            steps=tuple(p.steps[0:p.num_steps]), scales=tuple(float(s) for s in p.scales[0:p.num_steps]),
            angle=float(p.angle), saturation=float(p.saturation), exposure=float(p.exposure), hue=float(p.hue),
            mosaic=bool(p.mosaic), flip=bool(p.flip), letter_box=bool(p.letter_box),
        )
        info = ffi.new("dn_layer_info *")
        layers = []
        for i in range(lib.dn_network_layer_count(self._handle_ptr)):
            check(lib.dn_network_layer_info(self._handle_ptr, i, info))
            layers.append(_layer_info(i, info[0]))
        self.layers: list[LayerInfo] = layers
        self.yolo_layers: list[LayerInfo] = [layer for layer in layers if layer.type == "yolo"]
        self.batch: int = lib.dn_network_batch(self._handle_ptr)

    def _resolve_names(self, names: Union[None, PathLike, Sequence[str]]) -> list[str]:
        if names is None:
            return [str(i) for i in range(self.classes)]
        if isinstance(names, (str, os.PathLike)):
            names = read_names(names)
        names = list(names)
        if len(names) < self.classes:
            raise ShapeError(f"{len(names)} class names for a network with {self.classes} classes")
        return names[: self.classes]

    @property
    def width(self) -> int:
        return self.params.width

    @property
    def height(self) -> int:
        return self.params.height

    @property
    def channels(self) -> int:
        return self.params.channels

    @property
    def classes(self) -> int:
        """Classes of the last [yolo] layer (0 for a network without one)."""
        return self.yolo_layers[-1].classes if self.yolo_layers else 0

    @property
    def letter_box(self) -> bool:
        return self.params.letter_box

    @property
    def seen(self) -> int:
        """Images seen in training, as stored in the .weights header."""
        with self._lock:
            return int(lib.dn_network_seen(self._live()))

    @property
    def gpu(self) -> Optional[int]:
        """The CUDA device the network runs on, None for the CPU."""
        with self._lock:
            device = int(lib.dn_network_gpu(self._live()))
        return device if device >= 0 else None

    @property
    def closed(self) -> bool:
        return self._handle_ptr is None

    @property
    def threads(self) -> int:
        """Threads of the CPU passes (forward, backward, update); settable."""
        with self._lock:
            return int(lib.dn_network_threads(self._live()))

    @threads.setter
    def threads(self, threads: Optional[int]) -> None:
        self._call(lib.dn_network_set_threads, resolve_threads(threads))

    @property
    def precision(self) -> str:
        """Precision of the inference forward: "fp32" or "bf16" (see the class); settable."""
        with self._lock:
            return PRECISIONS[lib.dn_network_precision(self._live())]

    @precision.setter
    def precision(self, precision: str) -> None:
        self._call(lib.dn_network_set_precision, _precision_value(precision))

    def _call(self, function, *args) -> None:  # noqa: ANN001 - an engine function
        """`function(handle, *args)` on the open network, under the lock; a failure raises."""
        with self._lock:
            check(function(self._live(), *args))

    def _live(self):  # noqa: ANN202 - a cffi pointer
        if self._handle_ptr is None:
            raise StateError(f"the network of {self.cfg_path} is closed")
        return self._handle_ptr

    # ---- weights ----
    def load_weights(self, path: PathLike) -> int:
        """Load a .weights file; returns the number of convolutional layers it filled."""
        path = Path(path)
        if not path.is_file():
            raise DarknetIOError(f"{path}: weights file not found")
        loaded = ffi.new("int *")
        self._call(lib.dn_network_load_weights, os.fsencode(path), loaded)
        self.layers_loaded = loaded[0]
        return self.layers_loaded

    def save_weights(self, path: PathLike, layers: Optional[int] = None) -> Path:
        """Write darknet .weights (version 0.2.5); written to a temporary file, then renamed.

        `layers=N` writes only the first N layers' parameters with `seen` reset to 0, as
        darknet's `partial` command (e.g. yolov4.conv.137): a start for training a cfg whose
        first N layers match, whatever its classes."""
        path = Path(path)
        if layers is not None and (isinstance(layers, bool) or not isinstance(layers, (int, np.integer))
                                   or not 0 <= layers <= len(self.layers)):
            raise ShapeError(f"layers must be an integer in [0, {len(self.layers)}], got {layers!r}")
        with replacing(path) as temporary:
            try:
                if layers is None:
                    self._call(lib.dn_network_save_weights, os.fsencode(temporary))
                else:
                    self._call(lib.dn_network_save_partial, os.fsencode(temporary), int(layers))
            except DarknetIOError as exc:  # the engine names the temporary file: name the user's
                raise DarknetIOError(f"{path}: {str(exc).replace(f'{temporary}: ', '')} "
                                     "(the previous file, if any, is unchanged)") from None
        return path

    def get_parameter(self, layer: int, kind: str) -> np.ndarray:
        """A copy of a convolutional layer's `weights` (filters, c/groups, size, size), `biases`,
        `scales`, `rolling_mean` or `rolling_variance`."""
        code, shape = self._parameter(layer, kind)
        out = np.empty(shape, dtype=np.float32)
        self._call(lib.dn_network_get_param, layer, code, as_float_buffer(out), out.size)
        return out

    def set_parameter(self, layer: int, kind: str, values: np.ndarray) -> None:
        """Overwrite a convolutional layer's parameter (same shapes as get_parameter)."""
        code, shape = self._parameter(layer, kind)
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.size != int(np.prod(shape)):
            raise ShapeError(f"layer {layer} {kind}: expected {shape}, got {values.shape}")
        self._call(lib.dn_network_set_param, layer, code, as_float_buffer(values), values.size)

    def _parameter(self, layer: int, kind: str) -> tuple[int, tuple[int, ...]]:
        codes = {"weights": lib.DN_PARAM_WEIGHTS, "biases": lib.DN_PARAM_BIASES, "scales": lib.DN_PARAM_SCALES,
                 "rolling_mean": lib.DN_PARAM_ROLLING_MEAN, "rolling_variance": lib.DN_PARAM_ROLLING_VARIANCE,
                 "weights_grad": lib.DN_PARAM_WEIGHTS_GRAD, "biases_grad": lib.DN_PARAM_BIASES_GRAD,
                 "scales_grad": lib.DN_PARAM_SCALES_GRAD}
        if kind not in codes:
            raise ShapeError(f"unknown parameter kind {kind!r}; expected one of {sorted(codes)}")
        if not 0 <= layer < len(self.layers) or self.layers[layer].type != "convolutional":
            raise ShapeError(f"layer {layer} is not a [convolutional] layer")
        info = self.layers[layer]
        if kind in ("weights", "weights_grad"):
            shape = (info.filters, info.input_shape[0] // info.groups, info.size, info.size)
        else:
            shape = (info.filters,)
        return codes[kind], shape

    # ---- inference ----
    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        """Run the network on `blob`, float32 (N, C, H, W), RGB in [0, 1].

        Returns one array per [yolo] layer shaped (N, masks * (5 + classes), h, w), activated
        as darknet's yolo layer output: logistic x, y (with scale_x_y), objectness and classes;
        raw w, h. N may exceed `batch`; the work is split into engine calls of `batch` images.
        """
        blob = self._check_blob(blob)
        n = blob.shape[0]
        outputs = [np.empty((n,) + layer.output_shape, dtype=np.float32) for layer in self.yolo_layers]
        with self._lock:
            handle = self._live()
            for start in range(0, n, self.batch):
                chunk = np.ascontiguousarray(blob[start:start + self.batch])
                count = chunk.shape[0]
                check(lib.dn_network_forward(handle, as_float_buffer(chunk), count))
                for layer, out in zip(self.yolo_layers, outputs):
                    part = out[start:start + count]
                    check(lib.dn_network_copy_output(handle, layer.index, as_float_buffer(part), part.size))
        return outputs

    def forward_layer_outputs(self, blob: np.ndarray) -> list[np.ndarray]:
        """Every layer's output for `blob` (at most `batch` images); for inspection and tests."""
        return self._all_layer_outputs(blob, lib.dn_network_forward)

    def _all_layer_outputs(self, blob: np.ndarray, engine_forward) -> list[np.ndarray]:  # noqa: ANN001
        blob = self._check_batch(blob)
        with self._lock:
            handle = self._live()
            check(engine_forward(handle, as_float_buffer(blob), blob.shape[0]))
            return [self._copy_output(handle, layer, blob.shape[0]) for layer in self.layers]

    def _check_batch(self, blob: np.ndarray) -> np.ndarray:
        """_check_blob, and at most `batch` images (calls that keep per-image state in the engine)."""
        blob = self._check_blob(blob)
        if blob.shape[0] > self.batch:
            raise ShapeError(f"{blob.shape[0]} images for a network of batch {self.batch}")
        return blob

    @staticmethod
    def _copy_output(handle, layer: LayerInfo, n: int) -> np.ndarray:  # noqa: ANN001 - a cffi pointer
        out = np.empty((n,) + layer.output_shape, dtype=np.float32)
        check(lib.dn_network_copy_output(handle, layer.index, as_float_buffer(out), out.size))
        return out

    def _check_blob(self, blob: np.ndarray) -> np.ndarray:
        self._live()
        if not isinstance(blob, np.ndarray):
            raise ShapeError(f"forward expects a numpy array, got {type(blob).__name__}")
        expected = (self.channels, self.height, self.width)
        if blob.ndim != 4 or blob.shape[1:] != expected or blob.shape[0] < 1:
            raise ShapeError(f"forward expects float32 (N, {expected[0]}, {expected[1]}, {expected[2]}) NCHW, "
                             f"got shape {blob.shape}")
        if not np.issubdtype(blob.dtype, np.number):
            raise ShapeError(f"forward expects numbers, got dtype {blob.dtype}")
        return np.ascontiguousarray(blob, dtype=np.float32)

    def detect(self, image_bgr: np.ndarray, thresh: float = 0.25, nms: float = 0.45) -> list[_detect.Detection]:
        """Detections on one BGR uint8 image (H, W, 3), boxes in pixels of that image."""
        return self.detect_batch([image_bgr], thresh=thresh, nms=nms)[0]

    def detect_batch(self, images_bgr: Sequence[np.ndarray], thresh: float = 0.25,
                     nms: float = 0.45) -> list[list[_detect.Detection]]:
        """detect() for several images, run through the engine `batch` at a time."""
        if not 0 <= thresh <= 1 or not 0 <= nms <= 1:
            raise ShapeError(f"thresh and nms must be in [0, 1], got thresh={thresh}, nms={nms}")
        if not self.yolo_layers:
            raise StateError(f"{self.cfg_path} has no [yolo] layer to detect with")
        images = list(images_bgr)
        if not images:
            return []
        blob = np.stack([_detect.preprocess(img, self.width, self.height, self.letter_box) for img in images])
        outputs = self.forward(blob)
        results = []
        for i, image in enumerate(images):
            boxes, probs = _detect.decode(
                [out[i] for out in outputs], self.yolo_layers, self.width, self.height,
                image.shape[1], image.shape[0], self.letter_box, thresh,
            )
            last = self.yolo_layers[-1]
            if nms > 0 and len(boxes):
                _detect.nms(boxes, probs, nms, last.nms_kind, last.beta_nms)
            results.append(_detect.to_detections(boxes, probs, thresh, image.shape[1], image.shape[0], self.names))
        return results

    def detect_video(self, source, *, thresh: float = 0.25, nms: float = 0.45,  # noqa: ANN001 - a VideoSource
                     batch: Optional[int] = None, max_frames: Optional[int] = None):  # noqa: ANN201 - an iterator
        """A generator of `darknet_py.video.VideoFrame` (index, BGR image, detections) for every
        frame of a video file or camera index `source`, decoded by OpenCV and detected `batch`
        frames per engine call (default: this network's batch). See darknet_py.video."""
        from .video import detect_video

        return detect_video(self, source, thresh=thresh, nms=nms, batch=batch, max_frames=max_frames)

    # ---- export ----
    def export_onnx(self, path: PathLike, *, opset: int = 17, batch: int = 1, dynamic_batch: bool = False,
                    outputs: Literal["decoded", "raw"] = "decoded", fp16: bool = False) -> Path:
        """Write this network (its current weights) as an ONNX model; see `darknet_py.export_onnx`."""
        from .onnx_export import export_network

        self._live()
        return export_network(self, path, opset=opset, batch=batch, dynamic_batch=dynamic_batch, outputs=outputs,
                              fp16=fp16)

    # ---- training ----
    def train_step(self, images: np.ndarray, truths: np.ndarray, iteration: int = 0) -> TrainStats:
        """One forward/backward pass in training mode; gradients accumulate until update().

        images: float32 (n, C, H, W) RGB in [0, 1] with n <= batch; truths: float32
        (n, max_truths, 5) rows of cx, cy, w, h (relative to the image) and class id, zero rows
        after the last box. `iteration` decides `stopbackward`. Raises StateError on a
        non-finite loss (the weights are then left as they were before the step's update).
        """
        images = self._check_batch(images)
        truths = np.ascontiguousarray(truths, dtype=np.float32)
        if truths.ndim != 3 or truths.shape[0] != images.shape[0] or truths.shape[2] != 5:
            raise ShapeError(f"truths must be float32 (n={images.shape[0]}, max_truths, 5), got {truths.shape}")
        stats = ffi.new("dn_train_stats *")
        self._call(lib.dn_network_train_step, as_float_buffer(images), as_float_buffer(truths), images.shape[0],
                   truths.shape[1], int(iteration), stats)
        s = stats[0]
        return TrainStats(float(s.loss), float(s.avg_iou), float(s.avg_obj), float(s.avg_class),
                          float(s.recall50), float(s.recall75), float(s.iou_loss), float(s.class_loss), int(s.count))

    def update(self, learning_rate: float, momentum: float, decay: float, batch_images: int) -> None:
        """darknet's SGD step over the gradients accumulated from `batch_images` images."""
        self._call(lib.dn_network_update, float(learning_rate), float(momentum), float(decay), int(batch_images))

    def resize(self, width: int, height: int) -> None:
        """Change the network input size (multi-scale training; YOLO needs multiples of 32)."""
        with self._lock:  # the structure is re-read before anyone else runs the network
            check(lib.dn_network_resize(self._live(), int(width), int(height)))
            self._read_structure()

    def set_seen(self, seen: int) -> None:
        """Set the images-seen counter saved in the .weights header (iteration * batch)."""
        self._call(lib.dn_network_set_seen, int(seen))

    def forward_train(self, blob: np.ndarray) -> list[np.ndarray]:
        """Forward in training mode (batch-norm batch statistics); every layer's output."""
        return self._all_layer_outputs(blob, lib.dn_network_forward_train)

    def backward(self, top_grad: np.ndarray) -> np.ndarray:
        """After forward_train: back-propagate dL/d(last output) and return dL/d(input).
        Parameter gradients accumulate (read them with get_parameter(i, "weights_grad") ...)."""
        last = self.layers[-1]
        top_grad = np.ascontiguousarray(top_grad, dtype=np.float32)
        if top_grad.ndim != 4 or top_grad.shape[1:] != last.output_shape:
            raise ShapeError(f"top_grad must be (n,) + {last.output_shape}, got {top_grad.shape}")
        n = top_grad.shape[0]
        input_grad = np.zeros((n, self.channels, self.height, self.width), dtype=np.float32)
        self._call(lib.dn_network_backward, as_float_buffer(top_grad), as_float_buffer(input_grad), n)
        return input_grad

    def layer_delta(self, index: int, n: int) -> np.ndarray:
        """Layer `index`'s delta from the last training step for `n` images: darknet's
        -dL/d(output) (for [yolo], w.r.t. the logits of x, y, objectness and classes)."""
        layer = self.layers[index]
        out = np.empty((n,) + layer.output_shape, dtype=np.float32)
        self._call(lib.dn_network_copy_delta, index, as_float_buffer(out), out.size)
        return out

    def zero_grad(self) -> None:
        self._call(lib.dn_network_zero_grad)

    # ---- lifetime ----
    def close(self) -> None:
        """Free the engine's memory; later calls raise StateError. Safe to call twice."""
        with self._lock:
            if self._handle_ptr is not None:
                lib.dn_network_free(self._handle_ptr)
                self._handle_ptr = None

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle_ptr", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.layers)} layers"
        if not self.closed and self.gpu is not None:
            state += f", gpu={self.gpu}"
        return f"Network({str(self.cfg_path)!r}, {self.width}x{self.height}, batch={getattr(self, 'batch', '?')}, {state})"
