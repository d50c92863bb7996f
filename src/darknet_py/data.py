"""darknet's training data pipeline: random images, augmentation, truth arrays, prefetch threads.

A batch is a pure function of (seed, batch index, network size): every image slot draws
from its own numpy Generator seeded with (seed, index, slot), so thread timing and the
order of requests never change a batch, and training resumed at iteration k sees exactly
the batches an uninterrupted run would. As in darknet, images are drawn uniformly with
replacement (no epochs); the augmentation itself is in augment.py.
"""
from __future__ import annotations

import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ._typing import PathLike
from .augment import (Augmentation, Crop, augment_image, boxes_in_tile, draw_crop, move_to_corner, mosaic_cut,
                      place_boxes, tile_for_quadrant)
from .images import read_image
from .labels import image_labels
from .errors import DataError, ShapeError, StateError

__all__ = ["Augmentation", "Batch", "BatchLoader"]

Warn = Callable[[str], None]
EMPTY_BOXES = np.zeros((0, 5), dtype=np.float32)


@dataclass
class Batch:
    """One training batch.

    images: float32 (N, 3, H, W), RGB planes, values in [0, 1], C-contiguous (the engine's input).
    truths: float32 (N, max_boxes, 5), darknet's truth layout: cx, cy, w, h relative to the
        augmented image, then the class id; rows after the last box are all 0.
    paths: the source image of each slot (for a mosaic, the image of its top-left quadrant).
    """

    images: np.ndarray
    truths: np.ndarray
    paths: list[Path]


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=2)


class _Labels:
    """Label boxes per image, read once per loader; problems are reported once per file.

    Boxes are float32 (n, 5): cx, cy, w, h relative to the image, then the class id.
    """

    def __init__(self, classes: int, warn: Warn):
        self._classes = classes
        self._warn = warn
        self._boxes: dict[Path, np.ndarray] = {}
        self._lock = threading.Lock()

    def boxes(self, image: Path) -> np.ndarray:
        cached = self._boxes.get(image)
        if cached is not None:
            return cached
        boxes, problems = self._read(image)
        with self._lock:  # two threads may read the same file at once: one of them reports
            first = image not in self._boxes
            boxes = self._boxes.setdefault(image, boxes)
        if first:
            for message in problems:
                self._warn(message)
        return boxes

    def _read(self, image: Path) -> tuple[np.ndarray, list[str]]:
        labels = image_labels(image, self._classes)
        if labels.missing:  # darknet: "Can't open label file", and the image trains with no boxes.
            return EMPTY_BOXES, [f"{labels.path}: label file not found; {image} is used without boxes"]
        problems = []
        if labels.out_of_range:
            ids = sorted({class_id for _, class_id in labels.out_of_range})
            problems.append(f"{labels.path}: {len(labels.out_of_range)} box(es) with class id {ids} >= classes = "
                            f"{self._classes} skipped")
        kept = labels.boxes
        return np.concatenate([kept[:, 1:5], kept[:, :1]], axis=1), problems


@dataclass(frozen=True)
class _Augmented:
    """One augmented image: uint8 HWC BGR pixels at the network size, its boxes (relative,
    cx, cy, w, h, class), the crop that made it and the source size (width, height) in pixels."""

    pixels: np.ndarray
    boxes: np.ndarray
    crop: Crop
    source_size: tuple[int, int]


class _Pending:
    """A batch being filled by the thread pool, one task per image slot."""

    def __init__(self, images: np.ndarray, truths: np.ndarray, slots: list[Future]):
        self.images, self.truths, self.slots = images, truths, slots

    def result(self) -> Batch:
        return Batch(self.images, self.truths, [slot.result() for slot in self.slots])

    def cancel(self) -> None:
        for slot in self.slots:
            slot.cancel()


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ShapeError(f"{name} must be an integer >= {minimum}, got {value!r}")


class BatchLoader:
    """Training batches as darknet's load_data_detection makes them (OpenCV path).

    Each slot draws an image uniformly from `image_paths`, crops it with jitter (letter box
    optional), resizes it to the network size with cv2.resize, mirrors it with probability
    .5, shifts hue and scales saturation and exposure in HSV; with mosaic, half of the slots
    tile four such images around a random cut point. Boxes follow the pixels; boxes smaller
    than one network pixel are dropped and at most `max_boxes` are kept (a random subset).

    `workers` threads (0: none, everything happens in get()) prefetch the next `prefetch`
    batch indexes after each get(), at the size of that get(). Label problems go to `warn`
    (default warnings.warn) once per file; an unreadable image raises DataError from get().

    `slot_plan` (distributed training) maps the index passed to get() to (source index, first
    slot): slot s of the returned batch is then drawn as slot first + s of batch `source index`
    of a loader without a plan, so that one process can take any contiguous part of another's
    batches. The default is (index, 0).
    """

    def __init__(self, image_paths: Sequence[PathLike], *, classes: int, batch: int, width: int, height: int,
                 augmentation: Augmentation, max_boxes: int = 200, seed: int = 0, workers: int = 2,
                 prefetch: int = 2, warn: Optional[Warn] = None,
                 slot_plan: Optional[Callable[[int], tuple[int, int]]] = None):
        for name, value, minimum in (("classes", classes, 1), ("batch", batch, 1), ("width", width, 1),
                                     ("height", height, 1), ("max_boxes", max_boxes, 1), ("seed", seed, 0),
                                     ("workers", workers, 0), ("prefetch", prefetch, 0)):
            _check_int(name, value, minimum)
        if not isinstance(augmentation, Augmentation):
            raise ShapeError(f"augmentation must be an Augmentation, got {type(augmentation).__name__}")
        self.paths = [Path(p) for p in image_paths]
        if not self.paths:
            raise DataError("BatchLoader: the image list is empty")
        self.classes, self.batch, self.width, self.height = classes, batch, width, height
        self.augmentation, self.max_boxes, self.seed = augmentation, max_boxes, seed
        self.prefetch = prefetch if workers else 0
        self.slot_plan = slot_plan
        self._labels = _Labels(classes, warn or _default_warn)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="darknet_py-data") if workers else None
        self._pending: dict[tuple[int, int, int], _Pending] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ public

    def get(self, index: int, width: Optional[int] = None, height: Optional[int] = None) -> Batch:
        """Batch number `index` (0, 1, 2, ...) at `width` x `height` network pixels (default:
        the loader's size; multi-scale training passes the resized network's)."""
        _check_int("index", index, 0)
        width = self.width if width is None else width
        height = self.height if height is None else height
        _check_int("width", width, 1)
        _check_int("height", height, 1)
        with self._lock:
            if self._closed:
                raise StateError("BatchLoader is closed")
            pending = self._pending.pop((index, width, height), None) or self._start(index, width, height)
            self._prefetch_after(index, width, height)
        return pending.result()

    def close(self) -> None:
        """Stop the threads; batches being prefetched are dropped. Safe to call twice."""
        with self._lock:
            self._closed = True
            for pending in self._pending.values():
                pending.cancel()
            self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ scheduling

    def _start(self, index: int, width: int, height: int) -> _Pending:
        images = np.empty((self.batch, 3, height, width), dtype=np.float32)
        truths = np.zeros((self.batch, self.max_boxes, 5), dtype=np.float32)
        slots = []
        source, first = self.slot_plan(index) if self.slot_plan is not None else (index, 0)
        for slot in range(self.batch):
            args = (source, first + slot, width, height, images[slot], truths[slot])
            slots.append(self._pool.submit(self._fill_slot, *args) if self._pool else _done(self._fill_slot, *args))
        return _Pending(images, truths, slots)

    def _prefetch_after(self, index: int, width: int, height: int) -> None:
        wanted = [(index + k, width, height) for k in range(1, self.prefetch + 1)]
        for key in [key for key in self._pending if key not in wanted]:
            self._pending.pop(key).cancel()
        for key in wanted:
            if key not in self._pending:
                self._pending[key] = self._start(*key)

    # ------------------------------------------------------------------ one slot

    def _fill_slot(self, index: int, slot: int, width: int, height: int, image_out: np.ndarray,
                   truth_out: np.ndarray) -> Path:
        """Fill one slot of a batch (image_out: (3, H, W), truth_out: (max_boxes, 5)); returns its path."""
        rng = np.random.default_rng([self.seed, index, slot])
        # load_data_detection: `if (random_gen() % 2 == 0) use_mixup = 0` -- mosaic half the time.
        if self.augmentation.mosaic and rng.integers(2):
            path, pixels, boxes = self._mosaic(rng, width, height)
        else:
            path = self._draw_path(rng)
            single = self._augment(rng, path, width, height)
            pixels, boxes = single.pixels, single.boxes
        # darknet's mat_to_image: RGB planes of value / 255.f
        np.divide(pixels[:, :, ::-1].transpose(2, 0, 1), np.float32(255), out=image_out)
        kept = boxes[: self.max_boxes]
        truth_out[: len(kept)] = kept
        return path

    def _draw_path(self, rng: np.random.Generator) -> Path:
        return self.paths[int(rng.integers(len(self.paths)))]

    def _augment(self, rng: np.random.Generator, path: Path, width: int, height: int,
                 quadrant: Optional[int] = None) -> _Augmented:
        """One image cropped, resized to width x height, flipped and coloured, with its boxes
        (fill_truth_detection: shuffled, moved, at most max_boxes, those under 1 pixel dropped)."""
        image = read_image(path)
        oh, ow = image.shape[:2]
        crop = draw_crop(rng, self.augmentation, ow, oh, width, height)
        if quadrant is not None and rng.integers(2) == 0:
            crop = move_to_corner(crop, quadrant)
        boxes = self._labels.boxes(path)
        # darknet shuffles the labels before keeping the first `max`, so any subset may train.
        boxes = place_boxes(boxes[rng.permutation(len(boxes))][: self.max_boxes], crop, ow, oh)
        boxes = boxes[(boxes[:, 2] >= 1 / width) & (boxes[:, 3] >= 1 / height)]
        return _Augmented(augment_image(image, crop, width, height), boxes, crop, (ow, oh))

    def _mosaic(self, rng: np.random.Generator, width: int, height: int) -> tuple[Path, np.ndarray, np.ndarray]:
        """Four independently augmented images around a random cut point; boxes are cut at
        the quadrant borders. Returns the top-left image's path, the pixels and the boxes."""
        cut_x, cut_y = mosaic_cut(rng, width, height)
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        paths, boxes = [], []
        for quadrant in range(4):
            paths.append(self._draw_path(rng))
            part = self._augment(rng, paths[-1], width, height, quadrant)
            tile = tile_for_quadrant(quadrant, part.crop, *part.source_size, width, height, cut_x, cut_y)
            canvas[tile.y0:tile.y1, tile.x0:tile.x1] = part.pixels[tile.y0 + tile.dy:tile.y1 + tile.dy,
                                                                   tile.x0 + tile.dx:tile.x1 + tile.dx]
            boxes.append(boxes_in_tile(part.boxes, tile, width, height))
        return paths[0], canvas, np.concatenate(boxes)


def _done(function: Callable, *args) -> Future:
    """`function(*args)` run now, as a finished Future (the loader without threads)."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:  # re-raised by result(), as from a worker thread
        future.set_exception(exc)
    return future
