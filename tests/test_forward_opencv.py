"""Forward pass and detect() checked against OpenCV DNN's darknet importer (written by others)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import darknet_py as dn

CASES = [
    ("yolov3-tiny", 416, 416),
    ("yolov4-tiny", 416, 416),
    ("yolov4-tiny-3l", 416, 416),
    ("yolov4", 416, 416),
    ("yolov4-tiny", 320, 192),
]


def test_image(width: int = 500, height: int = 375, seed: int = 3) -> np.ndarray:
    """A BGR picture with smooth gradients and a few shapes (something for filters to respond to)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 127 // (width + height)], -1).astype(np.uint8)
    for _ in range(6):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, center, int(rng.integers(10, 80)), color, -1)
    return image


test_image.__test__ = False  # a helper, not a test


def opencv_outputs(cfg, weights, blob) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(blob)
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def to_opencv_rows(output: np.ndarray, layer: dn.LayerInfo, net_w: int, net_h: int) -> np.ndarray:
    """One image's yolo output (masks*(5+classes), h, w) as OpenCV's rows: cx, cy, w, h (relative),
    objectness, objectness * class score; rows ordered (row, col, anchor)."""
    masks, classes = len(layer.mask), layer.classes
    _, h, w = output.shape
    grid = output.reshape(masks, 5 + classes, h, w).transpose(2, 3, 0, 1)  # (h, w, anchor, entry)
    anchors = np.asarray(layer.anchors, dtype=np.float64)[list(layer.mask)]
    cx = (np.arange(w)[None, :, None] + grid[..., 0]) / w
    cy = (np.arange(h)[:, None, None] + grid[..., 1]) / h
    bw = np.exp(grid[..., 2]) * anchors[:, 0] / net_w
    bh = np.exp(grid[..., 3]) * anchors[:, 1] / net_h
    head = np.stack([cx, cy, bw, bh, grid[..., 4]], -1)
    return np.concatenate([head, grid[..., 4:5] * grid[..., 5:]], -1).reshape(-1, 5 + classes)


@pytest.mark.parametrize("arch,width,height", CASES)
def test_forward_matches_opencv(arch_files, arch, width, height):
    cfg, weights = arch_files(arch, width, height)
    blob = cv2.dnn.blobFromImage(test_image(), 1 / 255.0, (width, height), swapRB=True, crop=False)
    with dn.Network(cfg, weights) as net:
        assert (net.width, net.height) == (width, height)
        ours = net.forward(blob)
        layers = net.yolo_layers
    theirs = opencv_outputs(cfg, weights, blob)
    assert len(ours) == len(theirs) == len(layers) >= 2
    for out, ref, layer in zip(ours, theirs, layers):
        assert out.shape == (1,) + layer.output_shape
        rows = to_opencv_rows(out[0], layer, width, height)
        assert rows.shape == ref.shape
        np.testing.assert_allclose(rows, ref, rtol=0, atol=1e-4)
        # the check is only meaningful if the outputs vary
        assert rows[:, 4].std() > 1e-3 and rows[:, 2].std() > 1e-4


def reference_nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, exponent: float | None) -> np.ndarray:
    """Textbook greedy NMS for one class: IoU (exponent None) or DIoU = IoU - (d^2/c^2)^exponent."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(scores), bool)
    x1, y1 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2
    x2, y2 = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        iw = np.clip(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), 0, None)
        ih = np.clip(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), 0, None)
        inter = iw * ih
        iou = inter / (boxes[i, 2] * boxes[i, 3] + boxes[:, 2] * boxes[:, 3] - inter)
        if exponent is not None:
            cw = np.maximum(x2[i], x2) - np.minimum(x1[i], x1)
            ch = np.maximum(y2[i], y2) - np.minimum(y1[i], y1)
            d2 = (boxes[i, 0] - boxes[:, 0]) ** 2 + (boxes[i, 1] - boxes[:, 1]) ** 2
            iou = iou - (d2 / (cw ** 2 + ch ** 2)) ** exponent
        suppressed |= iou > thresh
    return np.asarray(keep, dtype=int)


@pytest.mark.parametrize("arch,width,height", [("yolov4-tiny", 416, 416), ("yolov4", 416, 416),
                                               ("yolov3-tiny", 416, 416)])
def test_detect_matches_opencv_after_same_thresholds_and_nms(arch_files, tmp_path, arch, width, height):
    cfg, random_weights = arch_files(arch, width, height)
    # A random network scores nearly every cell 0.5 x 0.5; sharper final layers spread the
    # scores so that thresholding and NMS face distinct values rather than a wall of ties.
    weights = tmp_path / "sharp.weights"
    with dn.Network(cfg, random_weights) as net:
        for layer in net.yolo_layers:
            head = layer.index - 1
            net.set_parameter(head, "weights", net.get_parameter(head, "weights") * 20)
        net.save_weights(weights)
    image = test_image()
    thresh, nms = 0.5, 0.45
    with dn.Network(cfg, weights, names=["head", "person"]) as net:
        detections = net.detect(image, thresh=thresh, nms=nms)
        last = net.yolo_layers[-1]
    blob = cv2.dnn.blobFromImage(image, 1 / 255.0, (width, height), swapRB=True, crop=False)
    rows = np.concatenate(opencv_outputs(cfg, weights, blob)).astype(np.float64)
    exponent = {"default": None, "greedynms": 0.6, "diounms": last.beta_nms}[last.nms_kind]
    expected = []
    im_h, im_w = image.shape[:2]
    for k in range(rows.shape[1] - 5):
        candidates = np.nonzero(rows[:, 5 + k] > thresh)[0]
        for i in candidates[reference_nms(rows[candidates, :4], rows[candidates, 5 + k], nms, exponent)]:
            cx, cy, w, h = rows[i, :4]
            expected.append((k, rows[i, 5 + k], (cx - w / 2) * im_w, (cy - h / 2) * im_h, w * im_w, h * im_h))
    assert len(expected) > 3, "the random network should find something to compare"
    assert len(detections) == len(expected)
    confidences = [d.confidence for d in detections]
    assert confidences == sorted(confidences, reverse=True)
    # pair each expected (class, box) with the detection of the same class nearest to it;
    # order alone cannot pair them, since near-equal confidences may swap places
    unmatched = list(detections)
    for k, conf, left, top, w, h in expected:
        det = min((d for d in unmatched if d.class_id == k),
                  key=lambda d: abs(d.left - left) + abs(d.top - top) + abs(d.width - w) + abs(d.height - h))
        unmatched.remove(det)
        assert det.name == ["head", "person"][k]
        assert isinstance(det.confidence, float)
        assert det.confidence == pytest.approx(conf, abs=1e-4)
        assert (det.left, det.top, det.width, det.height) == pytest.approx((left, top, w, h), rel=1e-4, abs=0.05)
        assert det.xyxy == pytest.approx((left, top, left + w, top + h), rel=1e-4, abs=0.05)
    assert not unmatched


def test_nms_default_matches_opencv_nmsboxes():
    rng = np.random.default_rng(7)
    n = 300
    centers = rng.uniform(0.2, 0.8, (n, 2))
    sizes = rng.uniform(0.05, 0.3, (n, 2))
    boxes = np.concatenate([centers, sizes], 1).astype(np.float32)
    scores = rng.uniform(0.3, 1.0, n).astype(np.float32)
    probs = scores[:, None].copy()
    dn.detect.nms(boxes, probs, 0.45)
    ours = set(np.nonzero(probs[:, 0] > 0)[0].tolist())
    rects = [(float(cx - w / 2), float(cy - h / 2), float(w), float(h)) for cx, cy, w, h in boxes.astype(np.float64)]
    theirs = set(np.asarray(cv2.dnn.NMSBoxes(rects, scores.tolist(), 0.0, 0.45)).ravel().tolist())
    assert ours == theirs and 10 < len(ours) < n


def test_letterbox_boxes_map_back_to_image_pixels(tmp_path):
    """With letter_box=1 the image is shrunk to fit and centred on grey; detect() must return
    boxes in the original image's pixels. Checked against the geometric mapping written out here:
    network pixel -> minus the grey border -> times (image size / letterboxed size)."""
    from helpers import write_arch_cfg, write_random_weights

    cfg = write_arch_cfg(tmp_path, "yolov4-tiny", letter_box=True)
    weights = write_random_weights(cfg, tmp_path / "w.weights")
    image = test_image(640, 360)
    thresh = 0.25
    new_w, new_h = dn.detect.letterbox_size(640, 360, 416, 416)
    assert (new_w, new_h) == (416, 234)
    dx, dy = (416 - new_w) // 2, (416 - new_h) // 2
    with dn.Network(cfg, weights) as net:
        assert net.letter_box
        detections = net.detect(image, thresh=thresh, nms=0)
        blob = dn.detect.preprocess(image, 416, 416, letter_box=True)
        assert np.all(blob[:, :dy] == 0.5) and np.all(blob[:, dy + new_h:] == 0.5)
        outputs = [out[0] for out in net.forward(blob[None])]
        # decode relative to the network input (as if the network saw a 416x416 image)
        boxes, probs = dn.detect.decode(outputs, net.yolo_layers, 416, 416, 416, 416, False, thresh)
    expected = []
    for (cx, cy, w, h), row in zip(boxes * 416, probs):
        for k in np.nonzero(row > thresh)[0]:
            left = (cx - w / 2 - dx) * 640 / new_w
            top = (cy - h / 2 - dy) * 360 / new_h
            expected.append((int(k), float(row[k]), left, top, w * 640 / new_w, h * 360 / new_h))
    assert len(detections) == len(expected) > 10
    expected.sort(key=lambda e: (-e[1], e[2], e[3]))
    got = sorted(((d.class_id, d.confidence, d.left, d.top, d.width, d.height) for d in detections),
                 key=lambda e: (-e[1], e[2], e[3]))
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-5, atol=1e-3)
