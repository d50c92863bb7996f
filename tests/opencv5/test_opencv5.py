"""darknet_py with OpenCV 5 (which reads ONNX but no longer darknet files).

Collected only where OpenCV 5 is installed: `.ci/opencv5_check.sh` runs it in a virtual
environment of its own (the main suite keeps OpenCV 4 for the darknet-importer comparisons).
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

import darknet_py as dn
from darknet_py.demo import DemoConfig, run_demo

from helpers import write_arch_cfg, write_random_weights

assert int(cv2.__version__.split(".")[0]) >= 5, f"these tests are for OpenCV 5, found {cv2.__version__}"


def test_installed_package_is_the_one_under_test():
    source_tree = Path(__file__).resolve().parents[2] / "src"
    assert source_tree not in Path(dn.__file__).resolve().parents


def test_pipeline_detect_and_train_run_with_opencv5(tmp_path):
    """synthesize -> prepare -> train() -> evaluate() -> detect() and drawing, all on OpenCV 5's
    image decoding, resizing and drawing."""
    result = run_demo(DemoConfig.quick(tmp_path / "demo"), progress=False, out=io.StringIO())
    assert result.train_result.iteration == 10 and np.isfinite(result.train_result.history.losses).all()
    assert cv2.imread(str(result.predictions)) is not None
    image = cv2.imread(str(sorted((result.dataset_root / "Images").glob("*.jpg"))[0]))
    with dn.Network(result.cfg_file, result.weights, names=["head", "person"]) as net:
        detections = net.detect(image, thresh=0.0)
    assert detections and all(0 <= d.confidence <= 1 for d in detections)


def test_readnetfromonnx_matches_onnxruntime_and_the_engine(tmp_path):
    cfg = write_arch_cfg(tmp_path, "yolov4-tiny")
    weights = write_random_weights(cfg, tmp_path / "yolov4-tiny.weights")
    model = dn.export_onnx(cfg, weights, tmp_path / "yolov4-tiny.onnx")
    blob = np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32)

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ort_boxes, ort_scores = session.run(["boxes", "scores"], {"images": blob})

    net = cv2.dnn.readNetFromONNX(str(model))
    net.setInput(blob, "images")
    cv_boxes, cv_scores = net.forward(["boxes", "scores"])
    assert cv_boxes.shape == ort_boxes.shape and cv_scores.shape == ort_scores.shape
    np.testing.assert_allclose(cv_boxes, ort_boxes, rtol=0, atol=1e-4)
    np.testing.assert_allclose(cv_scores, ort_scores, rtol=0, atol=1e-4)
    assert ort_scores.max() > 0.1

    with dn.Network(cfg, weights) as ours:  # and both equal the engine that was exported
        outputs = ours.forward(blob)
        boxes, probs = dn.detect.decode([o[0] for o in outputs], ours.yolo_layers, 416, 416, 416, 416, False, -1.0)
    np.testing.assert_allclose(cv_scores[0], probs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(cv_boxes[0, :, :2], boxes[:, :2] - boxes[:, 2:] / 2, rtol=0, atol=1e-4)
