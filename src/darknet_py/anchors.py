"""Anchor boxes by darknet's `calc_anchors`: k-means over label sizes with distance 1 - IoU.

Sizes are in network pixels: a label's relative width and height multiplied by the
network input `width` and `height`. Unlike darknet, nothing is written to disk
(darknet drops `anchors.txt` and `counters_per_class.txt` into the current directory).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._typing import PathLike
from .datafile import read_data_file, read_image_list
from .labels import image_labels
from .errors import DataError, ShapeError


#: darknet's iteration cap for k-means.
MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class AnchorResult:
    """k anchors sorted by area and how well they fit the boxes they came from.

    anchors: float array (k, 2) of (width, height) in network pixels.
    avg_iou: mean over the boxes of the best corner-aligned IoU with an anchor, 0..1.
    num_boxes: how many boxes were clustered.
    iterations: k-means iterations run (darknet stops at 1000 or when nothing moves).
    """

    anchors: np.ndarray
    avg_iou: float
    num_boxes: int = 0
    iterations: int = 0

    def darknet_lines(self, width: int = 416) -> list[str]:
        """darknet's two report lines; anchors rounded to integers when width > 32, as darknet does."""
        pattern = "%3.0f,%3.0f" if width > 32 else "%2.4f,%2.4f"
        pairs = ", ".join(pattern % (float(w), float(h)) for w, h in self.anchors)
        return [f"avg IoU = {100.0 * self.avg_iou:2.2f} %", f"anchors = {pairs}"]

    def as_int_pairs(self) -> list[tuple[int, int]]:
        """Anchors rounded to whole pixels (at least 1), the form cfg files usually carry."""
        return [(max(1, int(round(w))), max(1, int(round(h)))) for w, h in self.anchors]


def kmeans_anchors(wh: np.ndarray, k: int = 9, seed: int = 0, *, max_iterations: int = MAX_ITERATIONS) -> AnchorResult:
    """darknet's k-means on an (n, 2) array of box (width, height), any positive unit.

    Seeds are k distinct boxes drawn with `seed`; the same input and seed give the same
    anchors. Raises ShapeError for a bad shape, non-positive sizes or fewer boxes than k.
    """
    from ._engine import as_float_buffer, check, ffi, lib  # the compiled engine only when needed

    points = np.ascontiguousarray(wh, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ShapeError(f"kmeans_anchors: expected an (n, 2) array of width, height, got shape {points.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ShapeError(f"kmeans_anchors: k must be an integer, got {k!r}")
    anchors = np.zeros((max(int(k), 1), 2), dtype=np.float32)
    avg_iou = ffi.new("float *")
    iterations = ffi.new("int *")
    check(lib.dn_calc_anchors(as_float_buffer(points), points.shape[0], int(k), int(seed) & (2**64 - 1),
                              int(max_iterations), as_float_buffer(anchors), avg_iou, iterations))
    return AnchorResult(anchors.astype(np.float64), float(avg_iou[0]), int(points.shape[0]), int(iterations[0]))


def label_sizes(data: PathLike, width: int, height: int) -> np.ndarray:
    """(n, 2) float32 sizes in network pixels of every label of the .data file's train list.

    Images without a label file contribute nothing (darknet warns and goes on); labels
    with a class id >= classes or a zero size are left out, as training leaves them out.
    """
    config = read_data_file(data)
    if config.train is None:
        raise DataError(f"{config.path}: no 'train = ...' list to compute anchors from")
    sizes = []
    for image in read_image_list(config.train):
        boxes = image_labels(image, config.classes).boxes
        usable = (boxes[:, 3] > 0) & (boxes[:, 4] > 0)
        sizes.append(boxes[usable, 3:5] * np.array([width, height], dtype=np.float32))
    return np.concatenate(sizes) if sizes else np.zeros((0, 2), dtype=np.float32)


def calc_anchors(data: PathLike, num_of_clusters: int = 9, width: int = 416, height: int = 416, *,
                 seed: int = 0, show: bool = False) -> AnchorResult:
    """`darknet detector calc_anchors data -num_of_clusters N -width W -height H`.

    Clusters the (w, h) of every training label scaled to the network input
    (`width` x `height` pixels). With show=True prints darknet's `avg IoU = ...` and
    `anchors = w,h, w,h, ...` lines. Writes no files.
    """
    if width <= 0 or height <= 0:
        raise ShapeError(f"calc_anchors: width and height must be positive, got {width}x{height}")
    sizes = label_sizes(data, width, height)
    if len(sizes) < num_of_clusters:
        raise DataError(f"{data}: {len(sizes)} labelled boxes in the train list, "
                        f"fewer than num_of_clusters = {num_of_clusters}")
    result = kmeans_anchors(sizes, num_of_clusters, seed)
    if show:
        print("\n".join(result.darknet_lines(width)))
    return result
