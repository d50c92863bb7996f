"""Mean average precision as darknet's `detector map` computes it, plus a COCO-style mAP@[.5:.95].

Two layers:

* a pure core, `compute_map()` / `average_precision()` / `coco_map()`, working on arrays of
  boxes (no engine needed), and
* `evaluate()`, which reads a dataset (`.data` file, image list, YOLO label files), runs a
  `Network` over it and feeds the core.

darknet facts followed (AlexeyAB/darknet, src/detector.c, `validate_detector_map`):

* Detections are those above .005 after NMS .45; each (box, class) pair with a non-zero
  probability is one detection.
* Each detection is matched, within its image, to the same-class truth of highest IoU among those
  with IoU > iou_thresh (strictly greater; on equal IoU the first truth in the label file wins).
  The match is made per detection, independently of the other detections.
* All detections of all images are sorted by confidence, descending. Walking that order, a
  detection whose truth is still free is a TP and takes the truth; a detection whose truth was
  already taken, or that has no truth, is an FP. Ties in confidence keep the input order (image
  order of the list, then the order the network returned them): we use a stable sort; darknet uses
  `qsort`, which glibc implements as a stable merge sort in practice.
* AP with points=0: area under the monotone (non-increasing) precision envelope, summed over
  every unique recall. points=N: mean over i = 0..N-1 of the highest precision whose recall is
  >= i/(N-1) (0 where none is).
* A class without truths has recall 0 at every rank, so its AP is 0; the mAP still divides by
  all classes (darknet: `mean_average_precision / classes`).
* At the confidence threshold `thresh` (strictly greater): TP, FP, FN = truths - TP, precision,
  recall, F1 and average IoU = sum of the TPs' IoU / (TP + FP). darknet prints NaN where a
  denominator is 0; we report 0 instead.

Known difference: darknet decides "TP at thresh" per image in the order of its NMS output
(sorted by the *last* class's probability), so with several classes a lower-confidence duplicate
can take a truth before the higher one. We use confidence order, as the AP pass does; for
one-class networks both orders agree.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .datafile import PathLike, read_data_file, read_image_list
from .images import read_image
from .labels import image_labels
from .errors import DataError, ShapeError
from .progress import Progress

#: detector map's fixed detection threshold and NMS threshold (validate_detector_map).
MAP_DETECTION_THRESH = 0.005
MAP_NMS_THRESH = 0.45

#: pycocotools' defaults: IoU thresholds .50:.05:.95 and 101 recall points.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)

ArrayLike = Union[np.ndarray, Sequence[Sequence[float]]]


@dataclass(frozen=True)
class ClassAP:
    """AP of one class; tp / fp are counted at the confidence threshold (darknet's TP/FP columns)."""

    class_id: int
    name: str
    ap: float
    tp: int
    fp: int


@dataclass(frozen=True)
class MapResult:
    """darknet's `detector map` figures. Fractions are 0..1 (report() prints percentages).

    map: mean over all classes of AP at `iou_thresh` (darknet's mAP@0.50 by default).
    map_coco: COCO-style mAP@[.50:.95] (pycocotools' definition, area=all, no cap on detections
        per image and class, greedy matching with IoU >= t), averaged over classes with truths;
        0.0 when no class has truths (pycocotools reports -1).
    precision, recall, f1, tp, fp, fn, average_iou: at confidence > `thresh`.
    """

    map: float
    per_class: list[ClassAP]
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    average_iou: float
    detections_count: int
    unique_truth_count: int
    iou_thresh: float
    thresh: float
    points: int
    map_coco: float

    def report(self) -> str:
        """The text darknet's `detector map` prints after its progress counter."""
        counts = (self.detections_count, self.unique_truth_count)
        lines = ["\n detections_count = %d, unique_truth_count = %d  " % counts]
        lines += [
            "class_id = %d, name = %s, ap = %2.2f%%   \t (TP = %d, FP = %d) "
            % (c.class_id, c.name, c.ap * 100, c.tp, c.fp)
            for c in self.per_class
        ]
        lines.append(
            "\n for conf_thresh = %1.2f, precision = %1.2f, recall = %1.2f, F1-score = %1.2f "
            % (self.thresh, self.precision, self.recall, self.f1)
        )
        lines.append(
            " for conf_thresh = %0.2f, TP = %d, FP = %d, FN = %d, average IoU = %2.2f %% "
            % (self.thresh, self.tp, self.fp, self.fn, self.average_iou * 100)
        )
        if self.points:
            method = "used %d Recall-points " % self.points
        else:
            method = "used Area-Under-Curve for each unique Recall "
        lines.append("\n IoU threshold = %2.0f %%, " % (self.iou_thresh * 100) + method)
        lines.append(
            " mean average precision (mAP@%0.2f) = %f, or %2.2f %% " % (self.iou_thresh, self.map, self.map * 100)
        )
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- pure core


def box_iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (m, 4) with every box of `b` (n, 4), as (m, n) float64.

    Boxes are corners x1, y1, x2, y2 in any one unit (IoU does not depend on it, nor on a
    different scale along x and y, so pixels and darknet's relative coordinates agree).
    No +1 on widths, as darknet's box_iou and pycocotools. A zero union gives IoU 0.
    """
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(1, -1, 4)
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray, points: int = 0) -> float:
    """AP of one class from its PR curve, one entry per detection in confidence order.

    points=0: darknet's area under the curve: walking from the last rank back, each recall step
    is weighted by the highest precision at or after it (the monotone envelope).
    points=N (N >= 2): mean over recall levels i/(N-1) of the highest precision reached at a
    recall >= that level (11 for PASCAL VOC 2007, 101 for COCO). An empty curve gives 0.
    """
    if points < 0 or points == 1:
        raise ShapeError(f"points must be 0 (area under curve) or >= 2, got {points}")
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if points == 0:
        # darknet weighs the step from rank k to k+1 by max(precision[k:]); that equals the usual
        # max(precision[k+1:]) because a recall step is a TP, which never lowers precision.
        steps = np.diff(recall, prepend=0.0)
        weights = np.concatenate(([envelope[0]], envelope[:-1]))
        return float(np.sum(steps * weights))
    levels = np.arange(points) / (points - 1)
    best = [envelope[recall >= level].max(initial=0.0) for level in levels]
    return float(np.mean(best))


def _as_boxes(rows: Any, width: int, what: str, index: int) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, width))
    if array.ndim != 2 or array.shape[1] != width:
        raise ShapeError(f"{what}[{index}] must have shape (n, {width}), got {array.shape}")
    return array


def _check_inputs(
    truths_per_image: Sequence[ArrayLike], detections_per_image: Sequence[ArrayLike], classes: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(truths_per_image) != len(detections_per_image):
        raise ShapeError(
            f"{len(truths_per_image)} images of truths but {len(detections_per_image)} of detections"
        )
    if classes < 1:
        raise ShapeError(f"classes must be >= 1, got {classes}")
    truths = [_as_boxes(t, 5, "truths_per_image", i) for i, t in enumerate(truths_per_image)]
    detections = [_as_boxes(d, 6, "detections_per_image", i) for i, d in enumerate(detections_per_image)]
    for what, arrays in (("truths_per_image", truths), ("detections_per_image", detections)):
        for i, array in enumerate(arrays):
            ids = array[:, 0]
            if np.any((ids < 0) | (ids >= classes) | (ids != np.round(ids))):
                raise ShapeError(f"{what}[{i}]: class ids must be integers in [0, {classes})")
    return truths, detections


@dataclass(frozen=True)
class _Ranked:
    """Every detection, sorted by confidence (descending, stable), with its darknet verdict."""

    class_id: np.ndarray  # (D,) int
    confidence: np.ndarray  # (D,) float64
    is_tp: np.ndarray  # (D,) bool: first detection in rank order to take its truth
    iou: np.ndarray  # (D,) float64: IoU with the matched truth, 0 when unmatched


def _best_truths(
    image_truths: np.ndarray, image_dets: np.ndarray, iou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection of one image: index of its same-class truth of highest IoU > iou_thresh
    (-1 when none; the first truth on equal IoU, as darknet's strict '>'), and that IoU (0 if none)."""
    if not len(image_truths) or not len(image_dets):
        return np.full(len(image_dets), -1), np.zeros(len(image_dets))
    ious = box_iou_matrix(image_dets[:, 2:6], image_truths[:, 1:5])
    same_class = image_dets[:, :1] == image_truths[:, 0][None, :]
    # darknet also needs IoU > its running best, which starts at 0: IoU 0 never matches
    candidates = np.where(same_class & (ious > max(iou_thresh, 0.0)), ious, -1.0)
    best = candidates.argmax(axis=1)
    best_iou = candidates[np.arange(len(image_dets)), best]
    matched = best_iou > 0
    return np.where(matched, best, -1), np.where(matched, best_iou, 0.0)


def _match_darknet(truths: list[np.ndarray], detections: list[np.ndarray], iou_thresh: float) -> _Ranked:
    truth_of, iou_of = [np.zeros(0, dtype=int)], [np.zeros(0)]
    offset = 0  # global truth numbering, as darknet's unique_truth_index
    for image_truths, image_dets in zip(truths, detections):
        index, iou = _best_truths(image_truths, image_dets, iou_thresh)
        truth_of.append(np.where(index >= 0, index + offset, -1))
        iou_of.append(iou)
        offset += len(image_truths)
    all_dets = np.concatenate([np.zeros((0, 6))] + detections)
    truth_index, iou = np.concatenate(truth_of), np.concatenate(iou_of)
    order = np.argsort(-all_dets[:, 1], kind="stable")
    truth_index, iou = truth_index[order], iou[order]
    is_tp = np.zeros(len(order), dtype=bool)
    matched_ranks = np.flatnonzero(truth_index >= 0)
    _, first = np.unique(truth_index[matched_ranks], return_index=True)
    is_tp[matched_ranks[first]] = True
    return _Ranked(all_dets[order, 0].astype(int), all_dets[order, 1], is_tp, np.where(is_tp, iou, 0.0))


def _class_ap(ranked: _Ranked, class_id: int, truth_count: int, points: int) -> float:
    mine = ranked.class_id == class_id
    tp = np.cumsum(ranked.is_tp[mine])
    fp = np.cumsum(~ranked.is_tp[mine])
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / truth_count if truth_count else np.zeros(len(tp))
    return average_precision(recall, precision, points)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


def compute_map(
    truths_per_image: Sequence[ArrayLike],
    detections_per_image: Sequence[ArrayLike],
    classes: int,
    iou_thresh: float = 0.5,
    thresh: float = 0.25,
    points: int = 0,
    names: Optional[Sequence[str]] = None,
) -> MapResult:
    """darknet's `detector map` figures from boxes already detected.

    truths_per_image: one (n, 5) array per image: class_id, x1, y1, x2, y2.
    detections_per_image: one (m, 6) array per image: class_id, confidence (0..1), x1, y1, x2, y2,
        already thresholded (.005) and NMSed, in the order the network returned them (ties in
        confidence keep it). Coordinates in any unit shared by truths and detections of an image
        (evaluate() uses pixels of the original image).
    names: class names for the report (default: the class ids).
    """
    truths, detections = _check_inputs(truths_per_image, detections_per_image, classes)
    names = [str(i) for i in range(classes)] if names is None else list(names)
    if len(names) < classes:
        raise ShapeError(f"{len(names)} names for {classes} classes")
    ranked = _match_darknet(truths, detections, iou_thresh)
    truth_classes = np.concatenate([np.zeros(0)] + [t[:, 0] for t in truths]).astype(int)
    truth_counts = np.bincount(truth_classes, minlength=classes)
    above = ranked.confidence > thresh
    per_class = []
    for c in range(classes):
        mine = above & (ranked.class_id == c)
        class_tp = int(np.sum(ranked.is_tp & mine))
        ap = _class_ap(ranked, c, int(truth_counts[c]), points)
        per_class.append(ClassAP(c, names[c], ap, class_tp, int(np.sum(mine)) - class_tp))
    tp = int(np.sum(ranked.is_tp & above))
    fp = int(np.sum(above)) - tp
    unique_truth_count = int(truth_counts.sum())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, unique_truth_count)
    return MapResult(
        map=float(np.mean([c.ap for c in per_class])),
        per_class=per_class,
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        tp=tp,
        fp=fp,
        fn=unique_truth_count - tp,
        average_iou=_ratio(float(np.sum(ranked.iou[above])), tp + fp),
        detections_count=len(ranked.confidence),
        unique_truth_count=unique_truth_count,
        iou_thresh=iou_thresh,
        thresh=thresh,
        points=points,
        map_coco=coco_map(truths, detections, classes),
    )


def _coco_greedy_match(ious: np.ndarray, iou_thresh: float) -> np.ndarray:
    """pycocotools' evaluateImg matching for one image and class at one IoU threshold.

    ious: (detections in confidence order, truths). Each detection takes the not yet matched
    truth of highest IoU >= iou_thresh (the last such truth on equal IoU). Returns TP flags.
    """
    floor = min(iou_thresh, 1 - 1e-10)  # pycocotools caps the threshold the same way
    taken = np.zeros(ious.shape[1], dtype=bool)
    is_tp = np.zeros(ious.shape[0], dtype=bool)
    for k in np.flatnonzero((ious >= floor).any(axis=1)):
        free = np.where(taken, -1.0, ious[k])
        last_best = len(free) - 1 - int(np.argmax(free[::-1]))
        if free[last_best] >= floor:
            taken[last_best] = True
            is_tp[k] = True
    return is_tp


def _coco_ap(scores: np.ndarray, is_tp: np.ndarray, truth_count: int) -> float:
    """pycocotools' accumulate: 101-point interpolated AP of one class at one IoU threshold."""
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = tp / truth_count
    envelope = np.maximum.accumulate((tp / np.maximum(tp + fp, 1))[::-1])[::-1]
    at = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(np.mean(sampled))


def coco_map(
    truths_per_image: Sequence[ArrayLike],
    detections_per_image: Sequence[ArrayLike],
    classes: int,
    max_dets: Optional[int] = None,
) -> float:
    """COCO-style mAP@[.50:.95] as pycocotools' COCOeval (bbox, area=all) computes it.

    Same inputs as compute_map(). Mean over IoU thresholds .50:.05:.95 and over classes with at
    least one truth of the 101-point AP. Every truth counts (no crowd, no area range); max_dets
    caps the detections per image and class like COCOeval's maxDets (None: no cap, as darknet
    keeps every detection; pycocotools' headline number uses 100). 0.0 when there are no truths.
    """
    truths, detections = _check_inputs(truths_per_image, detections_per_image, classes)
    class_aps = []
    for c in range(classes):
        per_image = []  # (scores in confidence order, IoU matrix) of each image
        truth_count = 0
        for image_truths, image_dets in zip(truths, detections):
            gt = image_truths[image_truths[:, 0] == c, 1:5]
            dt = image_dets[image_dets[:, 0] == c]
            dt = dt[np.argsort(-dt[:, 1], kind="stable")][:max_dets]
            truth_count += len(gt)
            per_image.append((dt[:, 1], box_iou_matrix(dt[:, 2:6], gt)))
        if truth_count == 0:
            continue
        scores = np.concatenate([s for s, _ in per_image])
        aps = [
            _coco_ap(scores, np.concatenate([_coco_greedy_match(ious, t) for _, ious in per_image]), truth_count)
            for t in COCO_IOU_THRESHOLDS
        ]
        class_aps.append(np.mean(aps))
    return float(np.mean(class_aps)) if class_aps else 0.0


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class _Sample:
    path: Path
    image: np.ndarray  # BGR, as cv2.imread gives
    truths: np.ndarray  # (n, 5): class_id, x1, y1, x2, y2 in pixels of `image`


def _read_truths(image_path: Path, classes: int) -> np.ndarray:
    """Truths of an image (relative), under the label policy; a class id >= classes is an error
    here (a mAP over silently dropped truths would be wrong)."""
    labels = image_labels(image_path, classes)
    if labels.out_of_range:
        raise labels.out_of_range_error(classes)
    return labels.boxes


def _to_pixel_corners(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, 5) class, cx, cy, w, h relative -> class, x1, y1, x2, y2 in pixels."""
    cls, cx, cy, w, h = (labels[:, i].astype(np.float64) for i in range(5))
    return np.stack(
        [cls, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1
    ).reshape(-1, 5)


def _load_sample(path: Path, classes: int) -> _Sample:
    image = read_image(path)
    labels = _read_truths(path, classes)
    return _Sample(path, image, _to_pixel_corners(labels, image.shape[1], image.shape[0]))


class _Prefetcher:
    """Loads samples in a background thread, at most `depth` ahead; errors re-raise in order."""

    _DONE = object()

    def __init__(self, paths: Sequence[Path], classes: int, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(paths, classes), daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, paths: Sequence[Path], classes: int) -> None:
        for path in paths:
            try:
                item: object = _load_sample(path, classes)
            except Exception as exc:  # handed to the consumer, which raises it
                self._put(exc)
                return
            if not self._put(item):
                return
        self._put(self._DONE)

    def __iter__(self) -> Iterator[_Sample]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        """Stop the loader (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join()


def _detections_array(detections: Sequence[Any]) -> np.ndarray:
    """Detection objects (class_id, confidence, .xyxy in pixels) -> (m, 6) array for the core."""
    rows = [(d.class_id, d.confidence, *d.xyxy) for d in detections]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _run_network(net: Any, paths: Sequence[Path], classes: int, batch: int, progress: bool) -> tuple[list, list]:
    truths: list[np.ndarray] = []
    detections: list[np.ndarray] = []
    bar = Progress(len(paths), "mAP", enabled=progress, unit="images")
    loader = _Prefetcher(paths, classes, depth=2 * batch)
    pending: list[_Sample] = []

    def flush() -> None:
        results = net.detect_batch([s.image for s in pending], thresh=MAP_DETECTION_THRESH, nms=MAP_NMS_THRESH)
        truths.extend(s.truths for s in pending)
        detections.extend(_detections_array(r) for r in results)
        pending.clear()
        bar.update(len(truths))

    try:
        for sample in loader:
            pending.append(sample)
            if len(pending) == batch:
                flush()
        if pending:
            flush()
    finally:
        loader.close()
        bar.close()
    return truths, detections


def evaluation_images(data: PathLike) -> tuple[Any, list[Path]]:
    """The `.data` file and the images `detector map` evaluates: its `valid` list, else `train`.
    DataError when neither names a list or the list is empty."""
    config = read_data_file(data)
    list_path = config.valid or config.train
    if list_path is None:
        raise DataError(f"{config.path}: neither 'valid' nor 'train' names an image list")
    paths = read_image_list(list_path)
    if not paths:
        raise DataError(f"{list_path}: no images to evaluate")
    return config, paths


def evaluate(
    data: PathLike,
    cfg: Optional[PathLike],
    weights: Optional[PathLike],
    *,
    iou_thresh: float = 0.5,
    thresh: float = 0.25,
    points: int = 0,
    batch: int = 4,
    network: Any = None,
    progress: bool = True,
    names: Optional[Sequence[str]] = None,
    precision: str = "fp32",
) -> MapResult:
    """`darknet detector map data cfg weights` from Python.

    Images come from the `.data` file's `valid` list, or its `train` list when there is no
    `valid` (darknet falls back to train when mapping during training, and to the literal
    `data/train.txt` otherwise). Detections: thresh .005, NMS .45, `batch` images per forward
    pass; letterbox follows the cfg (the Network's business). Truths come from the label files
    (missing file = no truths). `network` reuses a loaded Network (cfg and weights are then
    ignored and it is not closed). `progress`: a tqdm bar on a terminal (a widget in a notebook),
    counter lines in logs, nothing when False. `precision`: the Network's inference precision
    ("fp32", or "bf16" on CPUs with AVX512-BF16; see Network).

    Raises DataError for an unreadable image, a label class >= classes, or a Network whose
    class count differs from the `.data` file's.
    """
    if batch < 1:
        raise ShapeError(f"batch must be >= 1, got {batch}")
    if points < 0 or points == 1:
        raise ShapeError(f"points must be 0 (area under curve) or >= 2, got {points}")
    config, paths = evaluation_images(data)
    net = network
    if net is None:
        from .network import Network  # the engine loads only when a network is really needed

        if cfg is None:
            raise ShapeError("cfg is required when no network is given")
        net = Network(cfg, weights, batch=batch, names=list(names or config.names), precision=precision)
    try:
        if net.classes != config.classes:
            raise DataError(f"{config.path}: classes = {config.classes} but the network has {net.classes}")
        truths, detections = _run_network(net, paths, config.classes, batch, progress)
    finally:
        if network is None:
            net.close()
    return compute_map(
        truths, detections, config.classes, iou_thresh=iou_thresh, thresh=thresh, points=points,
        names=list(names or config.names),
    )
