"""The demo (`darknet-py demo --quick`), its drawing helpers, its log, and the examples."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py import Detection, TrainProgress, cli
from darknet_py.demo import LOG_FIELDS, DemoConfig, TrainLog
from darknet_py.drawing import BACKGROUND, class_colour, draw_detections, image_grid

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name: str, *argv: object, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


# --------------------------------------------------------------------------- the demo


def test_demo_quick_end_to_end(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out_dir = tmp_path / "demo"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = cli.main(["demo", "--quick", "--out", str(out_dir)])
    text = stdout.getvalue()
    assert code == 0

    predictions, chart = out_dir / "predictions.jpg", out_dir / "chart.png"
    for path in (predictions, chart, out_dir / "train_log.csv", out_dir / "map.txt"):
        assert f" {path}\n" in text, f"{path} is not printed"
    image = cv2.imread(str(predictions))
    assert image is not None
    # Four held-out images in a 2x2 grid of 320-pixel cells: mostly picture, not padding.
    assert image.shape == (2 * 320 + 3 * 4, 2 * 320 + 3 * 4, 3)
    drawn = np.any(image.astype(int) - np.array(BACKGROUND) > 30, axis=2) & np.any(image > 30, axis=2)
    assert drawn.mean() > 0.3
    assert cv2.imread(str(chart)).shape == (600, 800, 3)

    with open(out_dir / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))
    assert rows[-1]["map"] != ""  # train() computes mAP at max_batches with compute_map
    assert "mean average precision (mAP@0.50)" in (out_dir / "map.txt").read_text()
    assert "[6/6] done in" in text and "10 iterations" in text
    assert list(cwd.iterdir()) == []  # nothing written to the current directory


def test_default_config_is_the_cpu_recipe():
    config = DemoConfig()
    assert (config.train_images, config.val_images, config.data_seed) == (400, 80, 0)
    assert (config.width, config.height, config.arch, config.train_seed) == (160, 160, "yolov4-tiny-3l", 1)
    assert config.cfg_options == dict(batch=16, subdivisions=1, max_batches=600, learning_rate=0.006,
                                      burn_in=100, steps=(480, 540), mosaic=False)
    assert config.compute_map and config.out_dir == Path("darknet_py_demo")
    DemoConfig().cfg_options["batch"] = 1  # each config gets its own dict
    assert DemoConfig().cfg_options["batch"] == 16


# --------------------------------------------------------------------------- TrainLog


def _progress(iteration: int, map_value=None) -> TrainProgress:
    return TrainProgress(iteration=iteration, max_batches=5, loss=2.5, avg_loss=3.0, learning_rate=0.001,
                         images=iteration * 4, seconds=0.5, map=map_value, width=64, height=64, stats=())


def test_train_log_writes_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    with TrainLog(path) as log:
        log(_progress(1))
        log(_progress(2, 0.5))
    with TrainLog(path, append=True) as log:
        log(_progress(3))
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(LOG_FIELDS)
    assert lines[2] == "2,2.500000,3.000000,0.00100000,0.500,8,0.500000"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    with TrainLog(path) as log:  # without append: a new log
        log(_progress(1))
    assert len(path.read_text().splitlines()) == 2


# --------------------------------------------------------------------------- drawing


def test_draw_detections_boxes_in_class_colour():
    image = np.full((100, 200, 3), 255, np.uint8)
    det = Detection(class_id=1, name="person", confidence=0.87, left=50, top=40, width=60, height=50)
    out = draw_detections(image, [det, dataclasses.replace(det, left=-30, top=-30, class_id=0, name="head")])
    assert np.all(image == 255)  # the input is untouched
    assert tuple(out[90, 80]) == class_colour(1)  # bottom edge of the box
    assert tuple(out[70, 80]) == (255, 255, 255)  # inside the box: untouched
    assert tuple(out[0:30, 0].min(axis=0)) != (255, 255, 255)  # a box mostly outside is clipped, still drawn


def test_image_grid_layout():
    images = [np.full((50, 100, 3), v, np.uint8) for v in (10, 20, 30, 40, 50)]
    grid = image_grid(images, cell=64, gap=2, captions=["a"])
    assert grid.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)  # 5 images: 3 columns, 2 rows
    assert tuple(grid[2 + 32, 2 + 64 + 2 + 32]) == (20, 20, 20)  # centre of the second cell
    assert tuple(grid[2 + 2, 2 + 32]) == BACKGROUND  # letterbox padding above a wide image
    with pytest.raises(ValueError):
        image_grid([])


# --------------------------------------------------------------------------- examples


def test_library_use_example_runs_on_synthesized_frames(tmp_path):
    result = run_example("library_use.py", "--work", tmp_path / "work", "--iterations", 2, "--frames", 3,
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frames = [line for line in result.stdout.splitlines() if line.startswith("frame ")]
    assert len(frames) == 3
    log = (tmp_path / "work" / "app.log").read_text()
    assert "my_app.detector iteration 1/2 loss" in log and "iteration 2/2" in log


@pytest.mark.parametrize("name", ["train_crowdhuman.py", "crowdhuman_quickstart.py", "library_use.py"])
def test_example_help(name, tmp_path):
    result = run_example(name, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert list(tmp_path.iterdir()) == []


def test_train_crowdhuman_example_missing_dataset(tmp_path):
    result = run_example("train_crowdhuman.py", tmp_path / "nowhere", "--work", tmp_path / "work", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path / 'nowhere' / 'annotation_train.odgt'}: annotation file not found\n"
