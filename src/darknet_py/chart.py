"""darknet's training chart: the average loss against iterations, mAP points on a second axis.

Drawn with OpenCV (no plotting library needed) and written atomically, so a viewer that
reloads the file while training never sees half a PNG.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ._atomic import replacing
from ._typing import PathLike
from .drawing import show_inline
from .errors import DarknetIOError


WIDTH, HEIGHT = 800, 600
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 70, 40, 50
LOSS_COLOUR = (255, 0, 0)   # BGR: blue, as darknet's loss curve
MAP_COLOUR = (0, 0, 255)    # red mAP points
GRID_COLOUR = (220, 220, 220)
TEXT_COLOUR = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
TICKS = 5


def _loss_ceiling(losses: Sequence[float]) -> float:
    """Top of the loss axis: the largest loss after the first tenth of the curve, rounded up to
    1, 2 or 5 times a power of ten. The first iterations' loss is often 100x the later one and
    would flatten the rest of the curve; points above the ceiling are drawn at the top."""
    finite = [v for v in losses if math.isfinite(v)]
    if not finite:
        return 1.0
    top = max(finite[len(finite) // 10:]) or 1.0
    power = 10.0 ** math.floor(math.log10(top))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= top)


def draw_chart(loss_points: Sequence[tuple[int, float]], map_points: Sequence[tuple[int, float]],
               max_batches: int, *, title: str = "") -> np.ndarray:
    """The chart as a BGR uint8 image (HEIGHT, WIDTH, 3).

    loss_points: (iteration, average loss); map_points: (iteration, mAP in 0..1). The x axis
    runs from 0 to max_batches iterations.
    """
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = HEIGHT - MARGIN_BOTTOM, MARGIN_TOP  # y grows downwards: y0 is the axis' bottom
    span = max(int(max_batches), 1)
    ceiling = _loss_ceiling([loss for _, loss in loss_points])

    def x_of(iteration: float) -> int:
        return int(round(x0 + (x1 - x0) * min(iteration, span) / span))

    def y_of(fraction: float) -> int:
        return int(round(y0 - (y0 - y1) * min(max(fraction, 0.0), 1.0)))

    for i in range(TICKS + 1):
        fraction = i / TICKS
        cv2.line(image, (x0, y_of(fraction)), (x1, y_of(fraction)), GRID_COLOUR, 1)
        cv2.putText(image, f"{ceiling * fraction:.3g}", (5, y_of(fraction) + 5), FONT, 0.45, LOSS_COLOUR, 1)
        cv2.putText(image, f"{100 * fraction:.0f}%", (x1 + 8, y_of(fraction) + 5), FONT, 0.45, MAP_COLOUR, 1)
        label = f"{span * fraction:.0f}"
        cv2.putText(image, label, (x_of(span * fraction) - 4 * len(label), y0 + 20), FONT, 0.45, TEXT_COLOUR, 1)
    cv2.rectangle(image, (x0, y1), (x1, y0), TEXT_COLOUR, 1)
    cv2.putText(image, "iteration", ((x0 + x1) // 2 - 30, HEIGHT - 10), FONT, 0.5, TEXT_COLOUR, 1)

    finite = [(it, loss) for it, loss in loss_points if math.isfinite(loss)]
    if finite:
        curve = np.array([(x_of(it), y_of(loss / ceiling)) for it, loss in finite], np.int32)
        cv2.polylines(image, [curve.reshape(-1, 1, 2)], False, LOSS_COLOUR, 1, cv2.LINE_AA)
    for it, value in map_points:
        point = (x_of(it), y_of(value))
        cv2.circle(image, point, 4, MAP_COLOUR, -1, cv2.LINE_AA)
        cv2.putText(image, f"{100 * value:.1f}%", (point[0] - 20, point[1] - 8), FONT, 0.4, MAP_COLOUR, 1)

    latest = f"avg loss {finite[-1][1]:.4f}" if finite else "avg loss -"
    if map_points:
        latest += f"   mAP {100 * map_points[-1][1]:.2f}%"
    cv2.putText(image, f"{title}   {latest}".strip(), (x0, y1 - 12), FONT, 0.55, TEXT_COLOUR, 1)
    return image


def save_chart(path: PathLike, loss_points: Sequence[tuple[int, float]], map_points: Sequence[tuple[int, float]],
               max_batches: int, *, title: str = "") -> Path:
    """draw_chart() written to `path` as PNG: a temporary file in the same folder, then renamed."""
    return write_png(path, draw_chart(loss_points, map_points, max_batches, title=title))


def write_png(path: PathLike, image: np.ndarray) -> Path:
    """`image` (BGR uint8) written to `path` as PNG atomically."""
    path = Path(path)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise DarknetIOError(f"{path}: OpenCV could not encode the image")
    try:
        with replacing(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise DarknetIOError(f"cannot write {path}: {exc.strerror}") from exc
    return path


class InlineChart:
    """The training chart in a notebook cell, redrawn in place by each show()."""

    def __init__(self) -> None:
        self._handle = None

    def show(self, image: np.ndarray) -> None:
        self._handle = show_inline(image, self._handle)
