"""darknet's `detector map` figures: hand-computed cases, pycocotools, and evaluate() on a tiny dataset."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py.detect import Detection
from darknet_py.errors import DataError, ShapeError
from darknet_py.evaluate import MapResult, average_precision, coco_map, compute_map, evaluate


def boxes(*rows):
    """Truth rows (class, x1, y1, x2, y2) or detection rows (class, conf, x1, y1, x2, y2)."""
    return np.array(rows, dtype=np.float64)


NONE_T = np.zeros((0, 5))
NONE_D = np.zeros((0, 6))

# One image, one class: truths T0, T1, T2 (10x10 squares); detections in confidence order:
#   .9 on T0 (IoU .8) -> TP  P=1    R=1/3
#   .8 far away       -> FP  P=1/2  R=1/3
#   .7 on T1 (IoU 1)  -> TP  P=2/3  R=2/3
#   .6 on T0 again    -> FP (T0 already taken)  P=2/4 R=2/3
#   .5 far away       -> FP  P=2/5  R=2/3
# AUC: envelope 1 on [0, 1/3], 2/3 on (1/3, 2/3]  -> 1/3 + 2/9 = 5/9
# 11 points: recall levels 0,.1,.2,.3 -> 1; .4,.5,.6 -> 2/3; .7..1 -> 0  -> (4 + 2) / 11 = 6/11
# 101 points: levels 0..33 -> 1 (34 of them); 34..66 -> 2/3 (33); rest 0 -> (34 + 22) / 101 = 56/101
ONE_CLASS_TRUTHS = [boxes((0, 0, 0, 10, 10), (0, 20, 0, 30, 10), (0, 40, 0, 50, 10))]
ONE_CLASS_DETS = [
    boxes(
        (0, 0.8, 100, 100, 110, 110),  # input order is not confidence order on purpose
        (0, 0.9, 0, 0, 10, 8),
        (0, 0.7, 20, 0, 30, 10),
        (0, 0.5, 200, 200, 210, 210),
        (0, 0.6, 0, 0, 10, 10),
    )
]


@pytest.mark.parametrize("points, expected", [(0, 5 / 9), (11, 6 / 11), (101, 56 / 101)])
def test_one_class_duplicate_and_misses(points, expected):
    result = compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1, points=points)
    assert result.map == pytest.approx(expected, abs=1e-6)
    assert result.per_class[0].ap == pytest.approx(expected, abs=1e-6)
    assert (result.detections_count, result.unique_truth_count) == (5, 3)


def test_conf_thresh_figures():
    # At conf > .25 all five count: TP 2, FP 3, FN 1; P = .4, R = 2/3, F1 = 2*.4*(2/3)/(.4+2/3) = .5;
    # average IoU = (.8 + 1) / (TP + FP) = .36.
    r = compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1)
    assert (r.tp, r.fp, r.fn) == (2, 3, 1)
    assert r.precision == pytest.approx(0.4) and r.recall == pytest.approx(2 / 3) and r.f1 == pytest.approx(0.5)
    assert r.average_iou == pytest.approx(0.36)
    # At conf > .65 only .9 (TP), .8 (FP), .7 (TP): P = 2/3, R = 2/3, avg IoU = 1.8 / 3 = .6.
    r = compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1, thresh=0.65)
    assert (r.tp, r.fp, r.fn) == (2, 1, 1)
    assert r.average_iou == pytest.approx(0.6)
    assert (r.per_class[0].tp, r.per_class[0].fp) == (2, 1)
    # The threshold is strict (darknet: prob > thresh): .7 is not above .7.
    assert compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1, thresh=0.7).tp == 1


def test_best_iou_truth_taken_is_false_positive():
    # Truths A (0..10) and B (4..14). .9 sits on B -> TP. .8 at 3..13 has IoU .538 with A and .818
    # with B: darknet matches it to B (highest IoU), already taken -> FP, even though A is free.
    # P = [1, .5], R = [.5, .5] -> AP = .5. (COCO's greedy matching would give it A.)
    truths = [boxes((0, 0, 0, 10, 10), (0, 4, 0, 14, 10))]
    dets = [boxes((0, 0.9, 4, 0, 14, 10), (0, 0.8, 3, 0, 13, 10))]
    r = compute_map(truths, dets, classes=1)
    assert r.map == pytest.approx(0.5, abs=1e-6)
    assert (r.tp, r.fp, r.fn) == (1, 1, 1)
    # At IoU .5 COCO's matching gives .8 to A: 101-point AP 1 at that threshold.
    assert coco_map(truths, dets, classes=1) > 0.5


def test_equal_iou_goes_to_first_truth_and_iou_threshold_is_strict():
    # Two identical truths, two identical detections: both detections pick the first truth
    # (darknet's strict '>'), so the second is FP: P = [1, .5], R = [.5, .5] -> AP .5.
    truths = [boxes((0, 0, 0, 10, 10), (0, 0, 0, 10, 10))]
    dets = [boxes((0, 0.9, 0, 0, 10, 10), (0, 0.8, 0, 0, 10, 10))]
    assert compute_map(truths, dets, classes=1).map == pytest.approx(0.5)
    # IoU exactly .5 (half the truth) is not a match at iou_thresh .5, but is at .4.
    half = [boxes((0, 0.9, 0, 0, 10, 5))]
    assert compute_map([truths[0][:1]], half, classes=1).map == 0.0
    assert compute_map([truths[0][:1]], half, classes=1, iou_thresh=0.4).map == pytest.approx(1.0)


def test_several_classes_and_images_class_without_truths_counts_as_zero():
    # Class 0 as ONE_CLASS (AP 5/9); class 1: truths, no detections (AP 0); class 2: a detection
    # but no truths (AP 0, darknet: recall 0 everywhere). Class 0's second image holds a class 2
    # detection over a class 0 truth: other class, no match, and that truth stays missed, so
    # class 0 has 4 truths: P/R for class 0: 1/4, 1/4, 2/4, 2/4, 2/4 -> AUC 1/4 + 1/4 * 2/3 = 5/12.
    # mAP = (5/12 + 0 + 0) / 3 = 5/36.
    truths = [ONE_CLASS_TRUTHS[0], boxes((1, 0, 0, 5, 5), (0, 50, 50, 60, 60))]
    dets = [ONE_CLASS_DETS[0], boxes((2, 0.95, 50, 50, 60, 60))]
    r = compute_map(truths, dets, classes=3, names=["a", "b", "c"])
    assert [c.ap for c in r.per_class] == pytest.approx([5 / 12, 0.0, 0.0], abs=1e-6)
    assert r.map == pytest.approx(5 / 36, abs=1e-6)
    assert [(c.name, c.tp, c.fp) for c in r.per_class] == [("a", 2, 3), ("b", 0, 0), ("c", 0, 1)]
    assert (r.tp, r.fp, r.fn, r.unique_truth_count) == (2, 4, 3, 5)
    # 11 points for class 0: levels 0,.1,.2 -> 1; .3,.4,.5 -> 2/3; rest 0 -> (3 + 2) / 11.
    r11 = compute_map(truths, dets, classes=3, points=11)
    assert r11.map == pytest.approx(5 / 11 / 3, abs=1e-6)


def test_ties_in_confidence_keep_input_order():
    # One truth; a FP and a TP with the same confidence. Ranks follow the input order
    # (image order, then order within an image): FP first -> P = [0, .5], R = [0, 1] -> AUC .5
    # and every 11-point level sees .5; TP first -> P = [1, .5], R = [1, 1] -> AP 1.
    truth = boxes((0, 0, 0, 10, 10))
    tp = boxes((0, 0.5, 0, 0, 10, 10))
    fp = boxes((0, 0.5, 50, 50, 60, 60))
    for points in (0, 11, 101):
        fp_first = compute_map([truth, NONE_T], [np.vstack([fp, tp]), NONE_D], classes=1, points=points)
        tp_first = compute_map([truth, NONE_T], [np.vstack([tp, fp]), NONE_D], classes=1, points=points)
        fp_first_across_images = compute_map([NONE_T, truth], [fp, tp], classes=1, points=points)
        assert fp_first.map == pytest.approx(0.5, abs=1e-6)
        assert fp_first_across_images.map == pytest.approx(0.5, abs=1e-6)
        assert tp_first.map == pytest.approx(1.0, abs=1e-6)


def test_no_detections_and_no_truths_give_zeros_without_errors():
    r = compute_map([boxes((0, 0, 0, 10, 10)), NONE_T], [NONE_D, NONE_D], classes=2)
    assert (r.map, r.map_coco, r.precision, r.recall, r.f1, r.average_iou) == (0, 0, 0, 0, 0, 0)
    assert (r.tp, r.fp, r.fn, r.detections_count) == (0, 0, 1, 0)
    r = compute_map([NONE_T], [boxes((1, 0.9, 0, 0, 1, 1))], classes=2)
    assert (r.map, r.recall, r.f1, r.fp, r.fn) == (0, 0, 0, 1, 0)
    r = compute_map([], [], classes=1)
    assert r.map == 0 and r.unique_truth_count == 0


def test_average_precision_direct_and_bad_points():
    # P/R points of ONE_CLASS in rank order.
    recall = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3]
    precision = [1, 1 / 2, 2 / 3, 2 / 4, 2 / 5]
    assert average_precision(recall, precision) == pytest.approx(5 / 9)
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError):
        average_precision(recall, precision, points=1)


def test_bad_inputs():
    with pytest.raises(ShapeError):
        compute_map([NONE_T], [], classes=1)
    with pytest.raises(ShapeError):
        compute_map([boxes((3, 0, 0, 1, 1))], [NONE_D], classes=2)
    with pytest.raises(ShapeError):
        compute_map([NONE_T], [boxes((0, 0.5, 0, 0, 1))], classes=1)


def test_report_uses_darknet_wording():
    text = compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1, names=["person"]).report()
    assert "class_id = 0, name = person, ap = 55.56%   \t (TP = 2, FP = 3) " in text
    assert " for conf_thresh = 0.25, precision = 0.40, recall = 0.67, F1-score = 0.50 " in text
    assert " for conf_thresh = 0.25, TP = 2, FP = 3, FN = 1, average IoU = 36.00 % " in text
    assert " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall " in text
    assert " mean average precision (mAP@0.50) = 0.555556, or 55.56 % " in text
    text = compute_map(ONE_CLASS_TRUTHS, ONE_CLASS_DETS, classes=1, points=101).report()
    assert " IoU threshold = 50 %, used 101 Recall-points " in text


# ----------------------------------------------------------------------------- pycocotools


def random_set(seed: int, images: int = 8, classes: int = 3):
    """Truths and detections in x, y, w, h (float64) plus their corner form for our core.

    Detections are jittered truths (some good, some poor) plus random clutter; scores are rounded
    to 0.05 so ties in confidence happen and the tie order (image id, then input order) matters.
    """
    rng = np.random.default_rng(seed)
    truths_xywh, dets_xywh = [], []
    for _ in range(images):
        n = rng.integers(0, 7)
        t = np.column_stack([rng.integers(0, classes, n), rng.uniform(0, 300, (n, 2)), rng.uniform(10, 120, (n, 2))])
        rows = []
        for row in t:
            for _ in range(rng.integers(0, 3)):
                jitter = rng.normal(0, rng.uniform(0.02, 0.2), 4) * np.r_[row[3:5], row[3:5]]
                wh = np.maximum(row[3:5] + jitter[2:], 2)
                rows.append([row[0], np.round(rng.uniform(), 2) // 0.05 * 0.05, *(row[1:3] + jitter[:2]), *wh])
        for _ in range(rng.integers(0, 5)):
            rows.append([rng.integers(0, classes), rng.uniform(), *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2)])
        truths_xywh.append(t.reshape(-1, 5))
        dets_xywh.append(np.array(rows, dtype=np.float64).reshape(-1, 6))

    def corners(a: np.ndarray, first: int) -> np.ndarray:
        out = a.copy()
        out[:, first + 2] = a[:, first] + a[:, first + 2]
        out[:, first + 3] = a[:, first + 1] + a[:, first + 3]
        return out

    truths = [corners(t, 1) for t in truths_xywh]
    dets = [corners(d, 2) for d in dets_xywh]
    return truths_xywh, dets_xywh, truths, dets


def pycocotools_map(truths_xywh, dets_xywh, classes: int, max_dets=(1, 10, 100)) -> float:
    """COCOeval bbox mAP@[.5:.95], area all, at the last maxDets (image ids follow list order)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations = [
        {"id": len_id, "image_id": i + 1, "category_id": int(row[0]), "bbox": [float(v) for v in row[1:5]],
         "area": float(row[3] * row[4]), "iscrowd": 0}
        for len_id, (i, row) in enumerate(((i, r) for i, t in enumerate(truths_xywh) for r in t), start=1)
    ]
    results = [
        {"image_id": i + 1, "category_id": int(row[0]), "score": float(row[1]), "bbox": [float(v) for v in row[2:6]]}
        for i, d in enumerate(dets_xywh)
        for row in d
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1, "width": 640, "height": 480} for i in range(len(truths_xywh))],
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in range(classes)],
        }
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.params.maxDets = list(max_dets)
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]  # T, R, K at area all, last maxDets
    return float(np.mean(precision[precision > -1]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coco_map_matches_pycocotools(seed):
    truths_xywh, dets_xywh, truths, dets = random_set(seed)
    expected = pycocotools_map(truths_xywh, dets_xywh, classes=3)
    assert max(len(d) for d in dets) < 100  # so COCO's maxDets=100 cuts nothing
    assert coco_map(truths, dets, classes=3) == pytest.approx(expected, abs=1e-4)
    assert compute_map(truths, dets, classes=3).map_coco == pytest.approx(expected, abs=1e-4)


def test_coco_map_max_dets_matches_pycocotools():
    truths_xywh, dets_xywh, truths, dets = random_set(7, images=6, classes=2)
    expected = pycocotools_map(truths_xywh, dets_xywh, classes=2, max_dets=(1, 2))
    assert coco_map(truths, dets, classes=2, max_dets=2) == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------- evaluate()


class FakeNetwork:
    """Duck-typed Network: recognises an image by the value of its pixel (0, 0) and returns the
    detections registered for it; records the calls."""

    def __init__(self, classes: int, detections_by_key: dict):
        self.classes, self.batch, self.letter_box = classes, 1, False
        self.detections_by_key = detections_by_key
        self.calls: list[tuple[int, float, float]] = []
        self.closed = False

    def detect_batch(self, images, thresh=0.25, nms=0.45):
        self.calls.append((len(images), thresh, nms))
        return [list(self.detections_by_key.get(int(image[0, 0, 0]), [])) for image in images]

    def close(self):
        self.closed = True


# (key, width, height, label rows or None for no label file)
DATASET = [
    (10, 64, 48, [(0, 0.5, 0.5, 0.25, 0.5), (1, 0.2, 0.3, 0.1, 0.2)]),
    (20, 80, 60, [(1, 0.6, 0.4, 0.3, 0.2)]),
    (30, 40, 40, None),
    (40, 50, 30, [(0, 0.5, 0.5, 1.0, 1.0)]),
    (50, 30, 50, []),
]


def write_dataset(root: Path, dataset=DATASET, key="valid") -> Path:
    (root / "images").mkdir()
    (root / "labels").mkdir()
    paths = []
    for image_key, width, height, labels in dataset:
        image = np.full((height, width, 3), image_key, dtype=np.uint8)
        path = root / "images" / f"img{image_key}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
        if labels is not None:
            text = "".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in labels)
            (root / "labels" / f"img{image_key}.txt").write_text(text)
    (root / "list.txt").write_text("\n".join(paths) + "\n")
    (root / "obj.names").write_text("cat\ndog\n")
    (root / "obj.data").write_text(f"classes = 2\n{key} = list.txt\nnames = obj.names\n")
    return root / "obj.data"


def perfect_detections(dataset=DATASET) -> dict:
    """Detections exactly on the truths, in pixels of each image."""
    found = {}
    for key, width, height, labels in dataset:
        found[key] = [
            Detection(int(c), str(c), 0.9, (x - w / 2) * width, (y - h / 2) * height, w * width, h * height)
            for c, x, y, w, h in labels or []
        ]
    return found


def test_evaluate_perfect_detections_give_map_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("darknet_py.progress.is_terminal", lambda stream: True)
    data = write_dataset(tmp_path)
    net = FakeNetwork(2, perfect_detections())
    result = evaluate(data, None, None, network=net, batch=2)
    assert isinstance(result, MapResult)
    assert result.map == pytest.approx(1.0)
    assert result.map_coco == pytest.approx(1.0)
    assert (result.tp, result.fp, result.fn, result.unique_truth_count) == (4, 0, 0, 4)
    assert [c.name for c in result.per_class] == ["cat", "dog"]
    assert result.average_iou == pytest.approx(1.0)
    # 5 images in batches of 2, at darknet's map thresholds; a given network stays open.
    assert net.calls == [(2, 0.005, 0.45), (2, 0.005, 0.45), (1, 0.005, 0.45)]
    assert not net.closed
    err = capsys.readouterr().err  # tqdm's bar, on a (pretend) terminal
    assert "\r" in err and "mAP" in err and "5/5" in err


def test_evaluate_writes_plain_lines_into_logs_and_nothing_when_off(tmp_path, capsys):
    data = write_dataset(tmp_path)
    evaluate(data, None, None, network=FakeNetwork(2, perfect_detections()), batch=2)
    err = capsys.readouterr().err  # stderr is captured, not a terminal: lines, no bar
    assert "\r" not in err and err.splitlines() == ["mAP: 2/5 images", "mAP: 4/5 images", "mAP: 5/5 images"]
    evaluate(data, None, None, network=FakeNetwork(2, perfect_detections()), batch=2, progress=False)
    assert capsys.readouterr().err == ""


def test_evaluate_missing_label_file_means_no_truths(tmp_path, capsys):
    data = write_dataset(tmp_path, key="train")  # no 'valid': falls back to the train list
    found = perfect_detections()
    found[30] = [Detection(0, "cat", 0.9, 0, 0, 40, 40)]  # image without label file
    result = evaluate(data, None, None, network=FakeNetwork(2, found), progress=False)
    assert result.unique_truth_count == 4
    assert (result.tp, result.fp) == (4, 1)
    # cat, all at .9, in image order: TP (img10), FP (img30), TP (img40): P = 1, 1/2, 2/3,
    # R = 1/2, 1/2, 1 -> AP = 1/2 + 1/2 * 2/3 = 5/6; dog AP 1; mAP = 11/12.
    assert result.map == pytest.approx(11 / 12)
    assert capsys.readouterr().err == ""


def test_evaluate_bad_label_class_names_file_and_line(tmp_path):
    data = write_dataset(tmp_path)
    (tmp_path / "labels" / "img20.txt").write_text("1 0.5 0.5 0.1 0.1\n\n2 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"img20\.txt:3: class id 2"):
        evaluate(data, None, None, network=FakeNetwork(2, {}), progress=False)


def test_evaluate_unreadable_image_and_class_mismatch(tmp_path):
    data = write_dataset(tmp_path)
    (tmp_path / "images" / "img20.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"img20\.png"):
        evaluate(data, None, None, network=FakeNetwork(2, {}), progress=False)
    with pytest.raises(DataError, match="classes = 2"):
        evaluate(data, None, None, network=FakeNetwork(3, {}), progress=False)


def test_evaluate_network_error_stops_the_loader(tmp_path):
    # batch 1 and a prefetch queue of 2: the loader is blocked on a full queue when the
    # network fails; evaluate() must raise the network's error, not hang.
    class Failing(FakeNetwork):
        def detect_batch(self, images, thresh=0.25, nms=0.45):
            raise RuntimeError("engine failed")

    data = write_dataset(tmp_path)
    with pytest.raises(RuntimeError, match="engine failed"):
        evaluate(data, None, None, network=Failing(2, {}), batch=1, progress=False)
