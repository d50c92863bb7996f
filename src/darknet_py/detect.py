"""From images to detections: resize/letterbox, yolo output decoding, NMS, pixel boxes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ._engine import as_float_buffer, check, lib
from .errors import ShapeError
from .names import NMS_KINDS

_NMS_KIND_CODES = {name: value for value, name in enumerate(NMS_KINDS)}


@dataclass(frozen=True)
class Detection:
    """One (box, class) above the threshold; box in pixels of the original image.

    left/top may be negative and left + width may exceed the image: like darknet, boxes are not
    clipped (use `clipped()` for drawing).
    """

    class_id: int
    name: str
    confidence: float
    left: float
    top: float
    width: float
    height: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) in pixels."""
        return (self.left, self.top, self.left + self.width, self.top + self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.width / 2, self.top + self.height / 2)

    def clipped(self, image_width: int, image_height: int) -> "Detection":
        """The same detection with its box cut to the image."""
        x1, y1, x2, y2 = self.xyxy
        x1, x2 = np.clip([x1, x2], 0, image_width)
        y1, y2 = np.clip([y1, y2], 0, image_height)
        return Detection(self.class_id, self.name, self.confidence, float(x1), float(y1),
                         float(x2 - x1), float(y2 - y1))


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ShapeError(f"an image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ShapeError(f"an image must be BGR uint8 shaped (H, W, 3), got {image.dtype} {image.shape}")


def letterbox_size(image_w: int, image_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """darknet's letterbox: the largest size of the image's aspect inside the network input
    (integer arithmetic as darknet's letterbox_image and correct_yolo_boxes)."""
    if net_w / image_w < net_h / image_h:
        return net_w, (image_h * net_w) // image_w
    return (image_w * net_h) // image_h, net_h


def preprocess(image_bgr: np.ndarray, net_w: int, net_h: int, letter_box: bool) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (3, net_h, net_w) RGB in [0, 1], resized (bilinear) or
    letterboxed (centred on 0.5 grey) as darknet does."""
    check_image(image_bgr)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if not letter_box:
        resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / 255.0
    new_w, new_h = letterbox_size(image_bgr.shape[1], image_bgr.shape[0], net_w, net_h)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((3, net_h, net_w), 0.5, dtype=np.float32)
    dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
    canvas[:, dy:dy + new_h, dx:dx + new_w] = resized.transpose(2, 0, 1).astype(np.float32) / 255.0
    return canvas


def decode(outputs: Sequence[np.ndarray], yolo_layers: Sequence, net_w: int, net_h: int, image_w: int,
           image_h: int, letter_box: bool, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4: cx, cy, w, h relative to the image) and class probabilities (n, classes)
    of the candidates whose objectness exceeds `thresh`, from one image's yolo outputs
    (each (masks * (5 + classes), h, w)). A probability is objectness * class score, or 0
    where that is not above `thresh`, as darknet's get_network_boxes."""
    all_boxes, all_probs = [], []
    for out, layer in zip(outputs, yolo_layers):
        masks, classes = len(layer.mask), layer.classes
        lh, lw = out.shape[1], out.shape[2]
        grid = out.reshape(masks, 5 + classes, lh, lw)
        objectness = grid[:, 4]
        a_idx, rows, cols = np.nonzero(objectness > thresh)
        if len(a_idx) == 0:
            continue
        cells = grid[a_idx, :, rows, cols]  # (k, 5 + classes)
        anchors = np.asarray(layer.anchors, dtype=np.float32)[np.asarray(layer.mask)[a_idx]]
        boxes = np.empty((len(a_idx), 4), dtype=np.float32)
        boxes[:, 0] = (cols + cells[:, 0]) / lw
        boxes[:, 1] = (rows + cells[:, 1]) / lh
        boxes[:, 2] = np.exp(cells[:, 2]) * anchors[:, 0] / net_w
        boxes[:, 3] = np.exp(cells[:, 3]) * anchors[:, 1] / net_h
        probs = cells[:, 4:5] * cells[:, 5:]
        probs[probs <= thresh] = 0
        all_boxes.append(boxes)
        all_probs.append(probs.astype(np.float32))
    classes = yolo_layers[-1].classes if yolo_layers else 0
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, classes), np.float32)
    boxes = np.concatenate(all_boxes)
    correct_boxes(boxes, image_w, image_h, net_w, net_h, letter_box)
    return boxes, np.ascontiguousarray(np.concatenate(all_probs))


def correct_boxes(boxes: np.ndarray, image_w: int, image_h: int, net_w: int, net_h: int, letter_box: bool) -> None:
    """Undo the letterbox in place: network-relative boxes -> image-relative (darknet's
    correct_yolo_boxes). Without letterbox the two are the same."""
    if not letter_box:
        return
    new_w, new_h = letterbox_size(image_w, image_h, net_w, net_h)
    ratio_w, ratio_h = new_w / net_w, new_h / net_h
    boxes[:, 0] = (boxes[:, 0] - (net_w - new_w) / 2.0 / net_w) / ratio_w
    boxes[:, 1] = (boxes[:, 1] - (net_h - new_h) / 2.0 / net_h) / ratio_h
    boxes[:, 2] /= ratio_w
    boxes[:, 3] /= ratio_h


def nms(boxes: np.ndarray, probs: np.ndarray, thresh: float, kind: str = "default", beta: float = 0.6) -> None:
    """darknet's per-class NMS, in place: probabilities of suppressed (box, class) pairs become 0.
    kind: "default" (IoU), "greedynms" (DIoU, exponent 0.6) or "diounms" (DIoU, exponent beta)."""
    if kind not in _NMS_KIND_CODES:
        raise ShapeError(f"unknown nms kind {kind!r}; expected one of {sorted(_NMS_KIND_CODES)}")
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    if probs.dtype != np.float32 or not probs.flags.c_contiguous:
        raise ShapeError("probs must be a C-contiguous float32 array (it is modified in place)")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or probs.ndim != 2 or probs.shape[0] != boxes.shape[0]:
        raise ShapeError(f"nms expects boxes (n, 4) and probs (n, classes), got {boxes.shape} and {probs.shape}")
    check(lib.dn_nms(as_float_buffer(boxes), as_float_buffer(probs), boxes.shape[0], probs.shape[1],
                     float(thresh), _NMS_KIND_CODES[kind], float(beta)))


def to_detections(boxes: np.ndarray, probs: np.ndarray, thresh: float, image_w: int, image_h: int,
                  names: Sequence[str]) -> list[Detection]:
    """One Detection per (box, class) with probability above `thresh`, highest first."""
    rows, class_ids = np.nonzero(probs > thresh)
    detections = []
    for r, k in zip(rows.tolist(), class_ids.tolist()):
        cx, cy, w, h = boxes[r].tolist()
        detections.append(Detection(
            class_id=k, name=names[k], confidence=float(probs[r, k]),
            left=(cx - w / 2) * image_w, top=(cy - h / 2) * image_h, width=w * image_w, height=h * image_h,
        ))
    detections.sort(key=lambda d: -d.confidence)
    return detections
