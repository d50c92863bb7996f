"""A small synthetic dataset in CrowdHuman's exact layout, for examples and tests.

`Images/<ID>.jpg` with IDs like `273271,c9db000d5146c15`, plus `annotation_train.odgt`
and `annotation_val.odgt`. Each image shows a few person-like figures (a round
skin-coloured head above a coloured torso and dark legs, human proportions) on a plain
background with a few muted shapes. Figures vary in size, overlap, occlude each other
and are cut by the image border; some images hold `mask` regions (blurred noise, like
CrowdHuman's crowd blurs). Heads hidden for the most part get head_attr.ignore = 1,
bodies hidden for the most part extra.ignore = 1. High contrast and simple shapes keep it
learnable by a small detector trained from scratch on a CPU in minutes.
All boxes are integer pixels [x, y, w, h] of the image, as in CrowdHuman.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ._atomic import replacing
from ._typing import PathLike
from .errors import ShapeError


# BGR skin tones from light to dark, and dark trouser colours.
_SKIN = ((176, 206, 240), (140, 180, 230), (110, 150, 205), (80, 115, 170), (60, 85, 125))
_LEGS = ((60, 30, 20), (40, 40, 40), (30, 50, 90), (90, 60, 40), (20, 20, 20))
# Proportions of the figure height: head diameter, width, where the legs start.
_HEAD = 0.17
_WIDTH = 0.42
_HIP = 0.58
_MAX_OVERLAP_IOU = 0.45
_HEAD_IGNORE_BELOW = 0.3   # visible fraction of the head under which it is flagged ignore
_BODY_IGNORE_BELOW = 0.15
_OCCLUDED_BELOW = 0.9


@dataclass(frozen=True)
class SynthesisSummary:
    """What synthesize() wrote: the dataset root, the IDs of each split, and counts."""

    root: Path
    train_ids: list[str]
    val_ids: list[str]
    persons: int
    masks: int


@dataclass(frozen=True)
class _Figure:
    cx: float    # pixels
    top: float
    height: float
    skin: tuple
    shirt: tuple
    legs: tuple

    @property
    def width(self) -> float:
        return self.height * _WIDTH

    @property
    def radius(self) -> float:
        return self.height * _HEAD / 2

    def fbox(self) -> list[int]:
        return _int_box(self.cx - self.width / 2, self.top, self.width, self.height)

    def hbox(self) -> list[int]:
        return _int_box(self.cx - self.radius, self.top, 2 * self.radius, 2 * self.radius)

    def parts(self, dx: float = 0.0, dy: float = 0.0) -> tuple:
        """(head centre, radius, torso polygon, two leg rectangles) in pixels, shifted by dx, dy."""
        cx, top, h, w, r = self.cx + dx, self.top + dy, self.height, self.width, self.radius
        shoulder, waist, hip = top + 2 * r + 0.02 * h, top + _HIP * h, top + (_HIP - 0.02) * h
        torso = np.array([[cx - 0.5 * w, shoulder], [cx + 0.5 * w, shoulder],
                          [cx + 0.3 * w, waist], [cx - 0.3 * w, waist]])
        leg_w, gap = 0.24 * w, 0.06 * w
        legs = [np.array([[x0, hip], [x0 + leg_w, hip], [x0 + leg_w, top + h], [x0, top + h]])
                for x0 in (cx - gap / 2 - leg_w, cx + gap / 2)]
        return (cx, top + r), r, torso, legs


def _int_box(x: float, y: float, w: float, h: float) -> list[int]:
    return [int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))]


def _pts(polygon: np.ndarray) -> np.ndarray:
    return np.round(polygon).astype(np.int32).reshape(-1, 1, 2)


def _draw_silhouette(canvas: np.ndarray, figure: _Figure, value, dx: float = 0.0, dy: float = 0.0) -> None:
    """The figure's whole shape in one colour (for the visibility map)."""
    (hx, hy), r, torso, legs = figure.parts(dx, dy)
    cv2.fillPoly(canvas, [_pts(torso)] + [_pts(leg) for leg in legs], value)
    cv2.circle(canvas, (int(round(hx)), int(round(hy))), int(round(r)), value, -1, cv2.LINE_8)


def _draw_figure(image: np.ndarray, figure: _Figure) -> None:
    (hx, hy), r, torso, legs = figure.parts()
    outline = max(1, int(round(figure.height / 120)))
    for leg in legs:
        cv2.fillPoly(image, [_pts(leg)], figure.legs)
    cv2.fillPoly(image, [_pts(torso)], figure.shirt)
    cv2.polylines(image, [_pts(torso)] + [_pts(leg) for leg in legs], True, (0, 0, 0), outline)
    centre = (int(round(hx)), int(round(hy)))
    cv2.circle(image, centre, int(round(r)), figure.skin, -1, cv2.LINE_AA)
    cv2.circle(image, centre, int(round(r)), (0, 0, 0), outline, cv2.LINE_AA)


def _muted_colour(rng: np.random.Generator) -> tuple:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 60), rng.integers(90, 230)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _vivid_colour(rng: np.random.Generator) -> tuple:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(170, 256), rng.integers(140, 256)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[:] = _muted_colour(rng)
    for _ in range(rng.integers(0, 5)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x0, y0), (x1, y1), _muted_colour(rng), -1)
        else:
            cv2.ellipse(image, (((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0.0), _muted_colour(rng), -1)
    return image


def _iou(a: list[int], b: list[int]) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _place_figures(rng: np.random.Generator, w: int, h: int, count: int, heights: tuple) -> list[_Figure]:
    """Up to `count` figures that overlap but rarely hide one another, nearest (lowest) last."""
    figures: list[_Figure] = []
    for _ in range(count * 10):
        if len(figures) == count:
            break
        fh = float(rng.uniform(*heights)) * h
        fw = fh * _WIDTH
        # Positions reach past the borders so that some figures are cut by them.
        candidate = _Figure(cx=float(rng.uniform(-0.2 * fw, w + 0.2 * fw)),
                            top=float(rng.uniform(-0.08 * fh, h - 0.55 * fh)), height=fh,
                            skin=_SKIN[rng.integers(len(_SKIN))], shirt=_vivid_colour(rng),
                            legs=_LEGS[rng.integers(len(_LEGS))])
        if all(_iou(candidate.fbox(), other.fbox()) <= _MAX_OVERLAP_IOU for other in figures):
            figures.append(candidate)
    return sorted(figures, key=lambda f: f.top + f.height)


def _draw_mask_region(rng: np.random.Generator, image: np.ndarray) -> list[int]:
    """A blurred noise patch (a crowd blur); returns its box."""
    h, w = image.shape[:2]
    bw, bh = int(rng.uniform(0.1, 0.3) * w), int(rng.uniform(0.1, 0.3) * h)
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    noise = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
    image[y:y + bh, x:x + bw] = cv2.GaussianBlur(noise, (0, 0), max(bw, bh) / 25)
    return [x, y, bw, bh]


def _visible_fraction(ids: np.ndarray, figure: _Figure, index: int, head: bool) -> tuple[float, list[int]]:
    """Share of the head (or the whole figure) still showing in the image, and the box of
    its visible pixels ([] when none)."""
    x, y, bw, bh = figure.hbox() if head else figure.fbox()
    own = np.zeros((bh + 2, bw + 2), np.uint8)
    if head:
        (hx, hy), r, _, _ = figure.parts(-x + 1, -y + 1)
        cv2.circle(own, (int(round(hx)), int(round(hy))), int(round(r)), 1, -1, cv2.LINE_8)
    else:
        _draw_silhouette(own, figure, 1, -x + 1, -y + 1)
    total = int(np.count_nonzero(own))
    h, w = ids.shape
    x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + bw + 1, w), min(y + bh + 1, h)
    region = ids[y0:y1, x0:x1] == index
    shown = int(np.count_nonzero(region))
    if shown == 0:
        return 0.0, []
    cols, rows = np.flatnonzero(region.any(axis=0)), np.flatnonzero(region.any(axis=1))
    visible_box = [x0 + int(cols[0]), y0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    return shown / max(total, 1), visible_box


def _person_entry(ids: np.ndarray, figure: _Figure, index: int, box_id: int) -> dict | None:
    body_vis, vbox = _visible_fraction(ids, figure, index, head=False)
    if body_vis == 0.0:
        return None  # hidden entirely: not annotated
    head_vis, _ = _visible_fraction(ids, figure, index, head=True)
    return {"tag": "person", "hbox": figure.hbox(),
            "head_attr": {"ignore": int(head_vis < _HEAD_IGNORE_BELOW), "occ": int(head_vis < _OCCLUDED_BELOW),
                          "unsure": 0},
            "fbox": figure.fbox(), "vbox": vbox,
            "extra": {"box_id": box_id, "occ": int(body_vis < _OCCLUDED_BELOW),
                      "ignore": int(body_vis < _BODY_IGNORE_BELOW)}}


def _make_image(rng: np.random.Generator, options: dict) -> tuple[np.ndarray, list[dict]]:
    """One picture and its gtboxes."""
    w = int(rng.integers(options["width_range"][0], options["width_range"][1] + 1))
    h = max(16, int(round(w / rng.uniform(*options["aspect_range"]))))
    image = _background(rng, w, h)
    gtboxes = []
    if rng.random() < options["mask_probability"]:
        box = _draw_mask_region(rng, image)
        gtboxes.append({"tag": "mask", "fbox": box, "vbox": box, "extra": {"ignore": 1}})
    count = int(rng.integers(options["figures"][0], options["figures"][1] + 1))
    figures = _place_figures(rng, w, h, count, options["figure_height"])
    ids = np.zeros((h, w), np.uint8)  # which figure shows at each pixel (index + 1)
    for index, figure in enumerate(figures, start=1):
        _draw_figure(image, figure)
        _draw_silhouette(ids, figure, index)
    for index, figure in enumerate(figures, start=1):
        entry = _person_entry(ids, figure, index, len(gtboxes))
        if entry is not None:
            gtboxes.append(entry)
    return image, gtboxes


def _new_id(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        image_id = f"{int(rng.integers(100000, 1000000))},{int(rng.integers(0, 16 ** 15)):015x}"
        if image_id not in taken:
            taken.add(image_id)
            return image_id


def _write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as temporary:
        temporary.write_bytes(data)


def synthesize(out_dir: PathLike, train: int = 40, val: int = 10, *, seed: int = 0,
               width_range: tuple[int, int] = (320, 640), aspect_range: tuple[float, float] = (0.6, 2.0),
               figures: tuple[int, int] = (1, 6), figure_height: tuple[float, float] = (0.3, 0.9),
               mask_probability: float = 0.25, jpeg_quality: int = 90) -> SynthesisSummary:
    """Write `train` + `val` synthetic images and their annotations under `out_dir`.

    width_range: image widths in pixels; aspect_range: width / height; figures: how many
    figures an image holds (fewer when they do not fit); figure_height: figure heights as
    a fraction of the image height. The same arguments give the same files.
    """
    if width_range[0] < 32 or width_range[1] < width_range[0]:
        raise ShapeError(f"width_range must be (min >= 32, max >= min), got {width_range}")
    if figures[0] < 0 or figures[1] < figures[0] or figures[1] > 250:
        raise ShapeError(f"figures must be (min >= 0, min <= max <= 250), got {figures}")
    root = Path(out_dir)
    (root / "Images").mkdir(parents=True, exist_ok=True)
    options = dict(width_range=width_range, aspect_range=aspect_range, figures=figures,
                   figure_height=figure_height, mask_probability=mask_probability)
    id_rng, taken = np.random.default_rng([seed, 0]), set()
    ids = {"train": [], "val": []}
    persons = masks = 0
    for split_index, (split, n) in enumerate((("train", train), ("val", val)), start=1):
        lines = []
        for i in range(n):
            image_id = _new_id(id_rng, taken)
            image, gtboxes = _make_image(np.random.default_rng([seed, split_index, i]), options)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise RuntimeError("OpenCV could not encode a JPEG")
            _write_bytes(root / "Images" / f"{image_id}.jpg", jpeg.tobytes())
            lines.append(json.dumps({"ID": image_id, "gtboxes": gtboxes}))
            ids[split].append(image_id)
            masks += sum(entry["tag"] == "mask" for entry in gtboxes)
            persons += sum(entry["tag"] == "person" for entry in gtboxes)
        _write_bytes(root / f"annotation_{split}.odgt", "".join(f"{line}\n" for line in lines).encode())
    return SynthesisSummary(root, ids["train"], ids["val"], persons, masks)
