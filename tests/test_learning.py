"""The full built-in recipe learns: from random weights to a working head + person detector.

This is the demo's own configuration (darknet-py demo): 400 synthesized CrowdHuman-format
training images, yolov4-tiny-3l at 160x160, 600 iterations of batch 16 on the CPU.
"""
from __future__ import annotations

import cv2
import pytest

import darknet_py as dn


@pytest.mark.slow
def test_demo_recipe_trains_a_detector_from_scratch(trained_demo):
    result = trained_demo

    # learns: mAP@0.5 on the held-out split, each class on its own
    assert result.map.map >= 0.90, result.map.report()
    assert all(c.ap >= 0.85 for c in result.map.per_class), result.map.report()
    assert result.map.precision > 0.85 and result.map.recall > 0.8

    # evaluate() reproduces the mAP that train(compute_map=True) measured on the same weights
    best = result.train_result
    assert best.best_weights == result.weights
    assert result.map.map == pytest.approx(best.best_map, abs=1e-9)

    # the loss came down and the outputs exist
    history = best.history
    assert history.avg_losses[-1] < 0.1 * history.avg_losses[20]
    assert cv2.imread(str(result.predictions)) is not None and cv2.imread(str(result.chart)) is not None

    # the trained weights load anywhere a cfg + .weights pair is expected, OpenCV DNN included
    net = cv2.dnn.readNetFromDarknet(str(result.cfg_file), str(result.weights))
    assert len(net.getUnconnectedOutLayersNames()) == 3
    with dn.Network(result.cfg_file, result.weights, names=["head", "person"]) as ours:
        image = cv2.imread(str(sorted((result.dataset_root / "Images").glob("*.jpg"))[0]))
        names = {d.name for d in ours.detect(image)}
    assert names <= {"head", "person"} and names
