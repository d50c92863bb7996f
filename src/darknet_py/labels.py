"""The one label policy of training, evaluation and anchors: which label file belongs to an
image (darknet's rule), what a missing file means, which boxes count."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._typing import PathLike
from .datafile import label_path_for, read_labels
from .errors import DataError


@dataclass(frozen=True)
class ImageLabels:
    """The boxes of one image. `boxes`: float32 (n, 5) class, cx, cy, w, h relative to the image,
    class ids < classes; `missing`: there is no label file (darknet: a warning, no boxes);
    `out_of_range`: (line, class id) of the boxes whose class id >= classes, left out."""

    path: Path
    boxes: np.ndarray
    missing: bool
    out_of_range: tuple[tuple[int, int], ...]

    def out_of_range_error(self, classes: int) -> DataError:
        line, class_id = self.out_of_range[0]
        return DataError(f"{self.path}:{line}: class id {class_id} but classes = {classes}")


def image_labels(image: PathLike, classes: int) -> ImageLabels:
    """The label file of `image` read under the policy (a malformed line is a DataError naming
    the file and line)."""
    path = label_path_for(image)
    if not path.is_file():
        return ImageLabels(path, np.zeros((0, 5), np.float32), True, ())
    labels = read_labels(path)
    wrong = labels[:, 0] >= classes
    out_of_range = ()
    if wrong.any():
        lines = _box_lines(path)
        out_of_range = tuple((lines[row], int(labels[row, 0])) for row in np.flatnonzero(wrong))
    return ImageLabels(path, labels[~wrong], False, out_of_range)


def _box_lines(path: Path) -> list[int]:
    """1-based line of each box of a label file (read_labels skips blank lines)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [number for number, line in enumerate(f, start=1) if line.split()]
