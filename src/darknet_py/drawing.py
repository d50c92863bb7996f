"""Detections drawn on images, and several images tiled into one picture (OpenCV only).

Every function returns a new BGR uint8 image; its inputs are left untouched.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

from .detect import Detection
from .errors import ShapeError

__all__ = ["class_colour", "draw_detections", "image_grid", "show_inline"]

#: Box colours (BGR) by class id, cycled: saturated hues that differ at a glance.
PALETTE = ((0, 200, 255), (255, 80, 0), (80, 220, 0), (255, 0, 200), (0, 60, 255), (200, 200, 0))
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = (40, 40, 40)   # grid cells' padding
CAPTION = (255, 255, 255)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The BGR colour boxes of `class_id` are drawn in."""
    return PALETTE[class_id % len(PALETTE)]


def _scale(image: np.ndarray) -> tuple[int, float]:
    """Line thickness (pixels) and font scale that stay legible from 64 to 4000 pixel images."""
    side = min(image.shape[:2])
    return max(1, round(side / 300)), max(0.3, side / 1000)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple, font_scale: float, thickness: int) -> None:
    """`text` on a filled box of `colour` whose bottom-left corner is (x, y), kept inside the image."""
    (tw, th), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    x = min(max(x, 0), max(image.shape[1] - tw, 0))
    y = max(y, th + baseline)  # a box at the top edge gets its label inside instead of cut off
    cv2.rectangle(image, (x, y - th - baseline), (x + tw, y), colour, -1)
    cv2.putText(image, text, (x, y - baseline), FONT, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)


def draw_detections(image_bgr: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of the image with each detection's box (clipped to the image) and a
    `name 87%` label in its class colour; lower-confidence boxes are drawn first, so the
    surest ones end up on top."""
    canvas = image_bgr.copy()
    height, width = canvas.shape[:2]
    thickness, font_scale = _scale(canvas)
    for det in sorted(detections, key=lambda d: d.confidence):
        box = det.clipped(width, height)
        x1, y1, x2, y2 = (int(round(v)) for v in box.xyxy)
        colour = class_colour(det.class_id)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        _label(canvas, f"{det.name} {100 * det.confidence:.0f}%", x1, y1, colour, font_scale, thickness)
    return canvas


def _fit(image: np.ndarray, cell: int) -> np.ndarray:
    """The image scaled to fit a `cell` x `cell` square (aspect kept), centred on BACKGROUND."""
    height, width = image.shape[:2]
    ratio = cell / max(height, width)
    new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
    square = np.full((cell, cell, 3), BACKGROUND, np.uint8)
    x, y = (cell - new_w) // 2, (cell - new_h) // 2
    square[y:y + new_h, x:x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return square


def image_grid(images: Sequence[np.ndarray], *, columns: Optional[int] = None, cell: int = 320,
               captions: Sequence[str] = (), gap: int = 4) -> np.ndarray:
    """Tile BGR images row by row into one picture: each scaled into a `cell`-pixel square,
    `gap` pixels apart, with an optional caption drawn in its top-left corner. `columns`
    defaults to the smallest count that makes the grid no taller than wide."""
    if not images:
        raise ShapeError("image_grid needs at least one image")
    columns = max(1, min(columns or math.ceil(math.sqrt(len(images))), len(images)))
    rows = math.ceil(len(images) / columns)
    grid = np.full((rows * cell + (rows + 1) * gap, columns * cell + (columns + 1) * gap, 3), 0, np.uint8)
    for index, image in enumerate(images):
        square = _fit(image, cell)
        if index < len(captions):
            cv2.putText(square, captions[index], (6, 18), FONT, 0.5, CAPTION, 1, cv2.LINE_AA)
        row, col = divmod(index, columns)
        y, x = gap + row * (cell + gap), gap + col * (cell + gap)
        grid[y:y + cell, x:x + cell] = square
    return grid


def show_inline(image: np.ndarray, handle=None):  # noqa: ANN001, ANN201 - IPython's DisplayHandle
    """Show a BGR image in a Jupyter/Colab output cell; given the `handle` an earlier call
    returned, replace that picture in place. Returns the handle."""
    from IPython.display import Image, display

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ShapeError("OpenCV could not encode the image as PNG")
    picture = Image(data=encoded.tobytes(), format="png")
    if handle is None:
        return display(picture, display_id=True)
    handle.update(picture)
    return handle
