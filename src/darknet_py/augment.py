"""darknet's detection augmentation for one image: crop jitter, letter box, flip, HSV, mosaic.

This follows AlexeyAB darknet's OpenCV path: `load_data_detection` and `fill_truth_detection`
(src/data.c), `image_data_augmentation` (src/image_opencv.cpp) and `blend_truth_mosaic`.
Images here are uint8 HWC arrays in OpenCV's BGR order (darknet converts to RGB on load; every
step below is per channel or colour-order symmetric, so the conversion happens once, at the
end, in data.py). Boxes are float arrays (n, 5): cx, cy, w, h relative to an image (0..1),
then the class id — darknet's truth layout. Crop offsets are pixels of the source image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .errors import ShapeError

__all__ = ["Augmentation", "Crop", "Tile", "augment_image", "boxes_in_tile", "draw_crop", "mosaic_cut",
           "move_to_corner", "place_boxes", "tile_for_quadrant"]

MOSAIC_MIN_OFFSET = 0.2  # load_data_detection: the cut point lies in [.2, .8] of width and height


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation, from the cfg's [net] (hue, saturation, exposure, flip, mosaic,
    letter_box) and the last [yolo] (jitter). Defaults are darknet's."""

    jitter: float = 0.2
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: bool = True
    mosaic: bool = False
    letter_box: bool = False

    def __post_init__(self) -> None:
        # jitter >= .5 can crop an image to nothing (each side may lose up to jitter * size).
        if not (math.isfinite(self.jitter) and 0 <= self.jitter < 0.5):
            raise ShapeError(f"jitter must be in [0, 0.5), got {self.jitter!r}")
        if not (math.isfinite(self.hue) and 0 <= self.hue <= 1):
            raise ShapeError(f"hue must be in [0, 1], got {self.hue!r}")
        for name in ("saturation", "exposure"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ShapeError(f"{name} must be a positive number, got {value!r}")

    @classmethod
    def none(cls) -> "Augmentation":
        """No randomness at all: the whole image stretched to the network size."""
        return cls(jitter=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=False, mosaic=False, letter_box=False)


@dataclass(frozen=True)
class Crop:
    """Where one image is cut and how it is coloured.

    pleft, pright, ptop, pbot: source pixels removed from each side (negative: the crop reaches
    outside the image, padded with its mean colour). flip mirrors the result horizontally;
    dhue is a hue shift in turns (x 179 OpenCV hue units); dsat and dexp scale S and V.
    """

    pleft: int
    pright: int
    ptop: int
    pbot: int
    flip: bool = False
    dhue: float = 0.0
    dsat: float = 1.0
    dexp: float = 1.0

    def width(self, ow: int) -> int:
        """Crop width in source pixels."""
        return ow - self.pleft - self.pright

    def height(self, oh: int) -> int:
        """Crop height in source pixels."""
        return oh - self.ptop - self.pbot


def _precalc_random(low: float, high: float, r: float) -> int:
    # rand_precalc_random, stored into an int: C truncates toward zero, as int() does.
    return int(r * (high - low) + low)


def _rand_scale(rng: np.random.Generator, s: float) -> float:
    # rand_scale: U(1, s), or its reciprocal with probability .5.
    scale = float(rng.uniform(min(1.0, s), max(1.0, s)))
    return scale if rng.integers(2) else 1.0 / scale


def draw_crop(rng: np.random.Generator, aug: Augmentation, ow: int, oh: int, net_w: int, net_h: int) -> Crop:
    """Random crop and colour of an `ow` x `oh` image for a `net_w` x `net_h` network.

    Each side moves by U(-jitter, jitter) * size (whole pixels); with letter_box the crop
    then grows on two opposite sides to the network's aspect ratio, so the resize keeps
    the image's aspect ratio.
    """
    dw, dh = int(ow * aug.jitter), int(oh * aug.jitter)
    r = rng.random(4)
    pleft, pright = _precalc_random(-dw, dw, r[0]), _precalc_random(-dw, dw, r[1])
    ptop, pbot = _precalc_random(-dh, dh, r[2]), _precalc_random(-dh, dh, r[3])
    flip = bool(rng.integers(2)) if aug.flip else False
    dhue = float(rng.uniform(-aug.hue, aug.hue))
    dsat = _rand_scale(rng, aug.saturation)
    dexp = _rand_scale(rng, aug.exposure)
    if aug.letter_box:
        net_ar = net_w / net_h
        if (ow / oh) / net_ar > 1:
            delta = (ow / net_ar - oh) / 2
            ptop, pbot = int(ptop - delta), int(pbot - delta)
        else:
            delta = (oh * net_ar - ow) / 2
            pleft, pright = int(pleft - delta), int(pright - delta)
    return Crop(pleft, pright, ptop, pbot, flip, dhue, dsat, dexp)


def move_to_corner(crop: Crop, quadrant: int) -> Crop:
    """darknet's mosaic "move each 2nd image to the corner": the crop keeps its size but starts
    at the image's outer corner (away from the mosaic's centre), all the jitter going to the
    inner sides, so most of the image stays visible in its quadrant (0 top-left, 1 top-right,
    2 bottom-left, 3 bottom-right)."""
    horizontal = crop.pleft + crop.pright
    vertical = crop.ptop + crop.pbot
    right_side = quadrant in (1, 3)
    if crop.flip:  # the tile is mirrored later, so the other side of the source faces the centre
        right_side = not right_side
    pleft, pright = (horizontal, 0) if right_side else (0, horizontal)
    ptop, pbot = (vertical, 0) if quadrant in (2, 3) else (0, vertical)
    return replace(crop, pleft=pleft, pright=pright, ptop=ptop, pbot=pbot)


def _crop_with_padding(image: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop rectangle of `image` (HWC); parts outside the image take its mean colour."""
    oh, ow = image.shape[:2]
    x0, y0 = max(crop.pleft, 0), max(crop.ptop, 0)
    x1, y1 = min(ow - crop.pright, ow), min(oh - crop.pbot, oh)
    inner = image[y0:y1, x0:x1]
    pads = (y0 - crop.ptop, crop.height(oh) - (y1 - crop.ptop), x0 - crop.pleft, crop.width(ow) - (x1 - crop.pleft))
    if not any(pads):
        return inner
    # cv::Mat::setTo(cv::mean(img)) rounds the mean to the nearest integer, ties to even.
    mean = [float(v) for v in np.rint(cv2.mean(image)[: image.shape[2]])]
    return cv2.copyMakeBorder(inner, *pads, cv2.BORDER_CONSTANT, value=mean)


def _hsv_table(dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """A (256, 1, 3) uint8 lookup table for H, S, V doing what darknet's 8-bit Mat arithmetic
    does: `hsv[0] += 179 * dhue` (cv::add of a Scalar: the shift is rounded, the sum saturated)
    and `hsv[1] *= dsat`, `hsv[2] *= dexp` (convertTo: product rounded, then saturated)."""
    values = np.arange(256, dtype=np.float32)
    hue = values + np.rint(np.float32(179) * np.float32(dhue))
    sat = np.rint(values * np.float32(dsat))
    val = np.rint(values * np.float32(dexp))
    return np.clip(np.stack([hue, sat, val], axis=1), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def augment_image(image: np.ndarray, crop: Crop, net_w: int, net_h: int) -> np.ndarray:
    """image_data_augmentation: crop (mean-colour padding), cv2.resize (bilinear) to
    `net_w` x `net_h`, mirror, then the HSV distortion. uint8 HWC BGR in and out."""
    sized = cv2.resize(_crop_with_padding(image, crop), (net_w, net_h), interpolation=cv2.INTER_LINEAR)
    if crop.flip:
        sized = cv2.flip(sized, 1)
    if crop.dsat != 1 or crop.dexp != 1 or crop.dhue != 0:
        hsv = cv2.cvtColor(sized, cv2.COLOR_BGR2HSV)
        # OpenCV wraps hue values past 180 when converting back, as in darknet.
        sized = cv2.cvtColor(cv2.LUT(hsv, _hsv_table(crop.dhue, crop.dsat, crop.dexp)), cv2.COLOR_HSV2BGR)
    return sized


def place_boxes(boxes: np.ndarray, crop: Crop, ow: int, oh: int) -> np.ndarray:
    """correct_boxes: label boxes (cx, cy, w, h relative to the source image, class) moved into
    the crop, mirrored with it and clipped to it; relative to the augmented image. Boxes outside
    the crop come out with zero width or height."""
    cx, cy, w, h = (boxes[:, k].astype(np.float64) for k in range(4))
    left = ((cx - w / 2) * ow - crop.pleft) / crop.width(ow)
    right = ((cx + w / 2) * ow - crop.pleft) / crop.width(ow)
    top = ((cy - h / 2) * oh - crop.ptop) / crop.height(oh)
    bottom = ((cy + h / 2) * oh - crop.ptop) / crop.height(oh)
    if crop.flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (np.clip(v, 0, 1) for v in (left, right, top, bottom))
    placed = np.stack([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top, boxes[:, 4]], axis=1)
    return placed.astype(np.float32)


def mosaic_cut(rng: np.random.Generator, net_w: int, net_h: int) -> tuple[int, int]:
    """The mosaic's cut point in network pixels, uniform over whole pixels in [.2, .8] of the size."""
    cut_x = int(rng.integers(int(net_w * MOSAIC_MIN_OFFSET), int(net_w * (1 - MOSAIC_MIN_OFFSET)), endpoint=True))
    cut_y = int(rng.integers(int(net_h * MOSAIC_MIN_OFFSET), int(net_h * (1 - MOSAIC_MIN_OFFSET)), endpoint=True))
    return cut_x, cut_y


@dataclass(frozen=True)
class Tile:
    """One quadrant of a mosaic, in network pixels: the region [x0, x1) x [y0, y1) of the
    mosaic shows the augmented image shifted by (dx, dy): mosaic(x, y) = tile(x + dx, y + dy)."""

    x0: int
    y0: int
    x1: int
    y1: int
    dx: int
    dy: int


def tile_for_quadrant(quadrant: int, crop: Crop, ow: int, oh: int, net_w: int, net_h: int,
                      cut_x: int, cut_y: int) -> Tile:
    """Which part of an augmented image fills a quadrant (0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right). Each shows the part of its image next to the mosaic's centre, moved
    inwards past the mean-colour padding where the crop reached outside the image."""
    pleft, pright = (crop.pright, crop.pleft) if crop.flip else (crop.pleft, crop.pright)
    # Padding widths in network pixels (C integer division of non-negative numbers).
    left_shift = min(cut_x, max(0, -pleft * net_w // ow))
    right_shift = min(net_w - cut_x, max(0, -pright * net_w // ow))
    top_shift = min(cut_y, max(0, -crop.ptop * net_h // oh))
    bot_shift = min(net_h - cut_y, max(0, -crop.pbot * net_h // oh))
    if quadrant in (0, 2):
        x0, x1, dx = 0, cut_x, net_w - cut_x - right_shift
    else:
        x0, x1, dx = cut_x, net_w, left_shift - cut_x
    if quadrant in (0, 1):
        y0, y1, dy = 0, cut_y, net_h - cut_y - bot_shift
    else:
        y0, y1, dy = cut_y, net_h, top_shift - cut_y
    return Tile(x0, y0, x1, y1, dx, dy)


def boxes_in_tile(boxes: np.ndarray, tile: Tile, net_w: int, net_h: int) -> np.ndarray:
    """Boxes of an augmented image (relative, cx, cy, w, h, class) moved into the mosaic and cut
    at the tile's borders; boxes left with a side of at most one network pixel are dropped."""
    left = (boxes[:, 0] - boxes[:, 2] / 2) * net_w - tile.dx
    right = (boxes[:, 0] + boxes[:, 2] / 2) * net_w - tile.dx
    top = (boxes[:, 1] - boxes[:, 3] / 2) * net_h - tile.dy
    bottom = (boxes[:, 1] + boxes[:, 3] / 2) * net_h - tile.dy
    left, right = np.clip(left, tile.x0, tile.x1), np.clip(right, tile.x0, tile.x1)
    top, bottom = np.clip(top, tile.y0, tile.y1), np.clip(bottom, tile.y0, tile.y1)
    moved = np.stack([(left + right) / 2 / net_w, (top + bottom) / 2 / net_h,
                      (right - left) / net_w, (bottom - top) / net_h, boxes[:, 4]], axis=1).astype(np.float32)
    keep = (moved[:, 2] > 1 / net_w) & (moved[:, 3] > 1 / net_h)
    return moved[keep]
