"""Run a darknet_py ONNX export with ONNX Runtime, NumPy and OpenCV only (no darknet_py needed):
darknet's preprocessing, thresholds and NMS, read from the model's metadata.

    darknet-py export yolov4-tiny-crowdhuman-416x416.cfg yolov4-tiny-crowdhuman_best.weights -o model.onnx
    python examples/deploy_onnxruntime.py model.onnx street.jpg [--thresh 0.25] [--nms 0.45] [--out boxes.jpg]

The functions below give the same detections as `darknet_py.Network.detect` on the same
image (the tests check it on a trained network), so a server can drop the C engine.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What the exporter wrote into the model's metadata_props."""

    width: int
    height: int
    letter_box: bool
    names: list
    nms_kind: str      # "default" (IoU), "greedynms" (DIoU, exponent 0.6) or "diounms" (DIoU, beta_nms)
    beta_nms: float

    @classmethod
    def of(cls, session) -> "ModelInfo":  # noqa: ANN001 - an onnxruntime.InferenceSession
        meta = session.get_modelmeta().custom_metadata_map
        return cls(int(meta["width"]), int(meta["height"]), json.loads(meta["letter_box"]), json.loads(meta["names"]),
                   meta["nms_kind"], float(meta["beta_nms"]))


def letterbox_size(image_w: int, image_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """darknet's letterbox: the largest size of the image's aspect inside the input (integers)."""
    if net_w / image_w < net_h / image_h:
        return net_w, (image_h * net_w) // image_w
    return (image_w * net_h) // image_h, net_h


def preprocess(image_bgr: np.ndarray, info: ModelInfo) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (1, 3, height, width) RGB in [0, 1], resized or letterboxed."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    if not info.letter_box:
        resized = cv2.resize(rgb, (info.width, info.height), interpolation=cv2.INTER_LINEAR)
        return (resized.transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
    new_w, new_h = letterbox_size(image_bgr.shape[1], image_bgr.shape[0], info.width, info.height)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    blob = np.full((1, 3, info.height, info.width), 0.5, dtype=np.float32)
    dx, dy = (info.width - new_w) // 2, (info.height - new_h) // 2
    blob[0, :, dy:dy + new_h, dx:dx + new_w] = resized.transpose(2, 0, 1).astype(np.float32) / 255.0
    return blob


def to_image_relative(boxes: np.ndarray, image_w: int, image_h: int, info: ModelInfo) -> np.ndarray:
    """x1, y1, x2, y2 relative to the network input -> relative to the image (undo the letterbox)."""
    if not info.letter_box:
        return boxes
    new_w, new_h = letterbox_size(image_w, image_h, info.width, info.height)
    offset = np.array([(info.width - new_w) / 2 / info.width, (info.height - new_h) / 2 / info.height] * 2)
    ratio = np.array([new_w / info.width, new_h / info.height] * 2)
    return (boxes - offset) / ratio


def overlap(box: np.ndarray, others: np.ndarray, kind: str, beta: float) -> np.ndarray:
    """IoU (kind "default") or DIoU = IoU - (centre distance^2 / enclosing diagonal^2)^exponent."""
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    if kind == "default":
        return iou
    diagonal = ((np.maximum(box[2], others[:, 2]) - np.minimum(box[0], others[:, 0])) ** 2
                + (np.maximum(box[3], others[:, 3]) - np.minimum(box[1], others[:, 1])) ** 2)
    distance = (((box[0] + box[2]) - (others[:, 0] + others[:, 2])) ** 2
                + ((box[1] + box[3]) - (others[:, 1] + others[:, 3])) ** 2) / 4
    exponent = beta if kind == "diounms" else 0.6
    penalty = np.power(distance / np.where(diagonal > 0, diagonal, 1), exponent)
    return np.where(diagonal > 0, iou - penalty, iou)


def postprocess(boxes: np.ndarray, scores: np.ndarray, image_w: int, image_h: int, info: ModelInfo,
                thresh: float = 0.25, nms: float = 0.45) -> list[tuple[int, str, float, float, float, float, float]]:
    """One image's `boxes` (B, 4) and `scores` (B, classes) -> (class_id, name, confidence, x1, y1,
    x2, y2 in image pixels), highest confidence first: darknet's per-class greedy NMS on boxes
    relative to the image, over the candidates whose score exceeds `thresh`."""
    relative = to_image_relative(boxes.astype(np.float64), image_w, image_h, info)
    found = []
    for k in range(scores.shape[1]):
        candidates = np.flatnonzero(scores[:, k] > thresh)
        candidates = candidates[np.argsort(-scores[candidates, k], kind="stable")]  # ties keep their order
        alive = np.ones(len(candidates), dtype=bool)
        for i in range(len(candidates)):
            if not alive[i]:
                continue
            rest = candidates[i + 1:]
            if nms > 0 and len(rest):
                alive[i + 1:] &= overlap(relative[candidates[i]], relative[rest], info.nms_kind, info.beta_nms) <= nms
            x1, y1, x2, y2 = relative[candidates[i]] * [image_w, image_h, image_w, image_h]
            found.append((k, info.names[k], float(scores[candidates[i], k]), x1, y1, x2, y2))
    found.sort(key=lambda d: -d[2])
    return found


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--thresh", type=float, default=0.25)
    parser.add_argument("--nms", type=float, default=0.45)
    parser.add_argument("--out", help="write the image with boxes drawn here")
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    info = ModelInfo.of(session)
    image = cv2.imread(args.image)
    if image is None:
        raise SystemExit(f"{args.image}: not an image OpenCV can read")
    boxes, scores = session.run(["boxes", "scores"], {"images": preprocess(image, info)})
    detections = postprocess(boxes[0], scores[0], image.shape[1], image.shape[0], info, args.thresh, args.nms)
    for _, name, confidence, x1, y1, x2, y2 in detections:
        print(f"{name}: {confidence:.2f} ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})")
        if args.out:
            cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 2)
    if args.out:
        cv2.imwrite(args.out, image)


if __name__ == "__main__":
    main()
