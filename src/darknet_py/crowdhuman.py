"""CrowdHuman for darknet: read `.odgt` annotations, write YOLO labels, lists, `.names` and `.data`.

Boxes in `.odgt` files are pixels of the image (x, y of the top-left corner, width,
height; they may lie partly or wholly outside it). YOLO label lines are relative to the
image size: `<class> <cx> <cy> <w> <h>` with six decimals. The minimum-size rule is in
network pixels: a box's size once the image is stretched to `width` x `height`.
"""
from __future__ import annotations

import filecmp
import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from ._atomic import replacing
from ._typing import PathLike
from .errors import DarknetIOError, DataError, quote
from .imagesize import image_size
from .progress import Progress
from .synthesize import SynthesisSummary, synthesize

Box = tuple[float, float, float, float]  # x, y, w, h in image pixels

__all__ = ["GtBox", "OdgtRecord", "PrepareSummary", "SynthesisSummary", "parse_odgt", "prepare", "synthesize"]

CLASS_NAMES = ("head", "person")
VBOX_CLASS_NAME = "vbox"
DROP_REASONS = ("mask", "ignored", "outside", "too_small")
CFG_CLUSTERS = {"yolov4": 9, "yolov4-tiny": 6, "yolov4-tiny-3l": 9}
DATA_DIR = "data"
MANIFEST = ".darknet_py_prepare"
LINK_MODES = ("symlink", "hardlink", "copy")
MAX_ID_BYTES = 250  # an image ID becomes <ID>.jpg / <ID>.txt: file names have at most 255 bytes


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class GtBox:
    """One `gtboxes` entry; a box field is None when the entry lacks it."""

    tag: Optional[str]
    hbox: Optional[Box] = None
    fbox: Optional[Box] = None
    vbox: Optional[Box] = None
    head_attr: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_mask(self) -> bool:
        """A region that is not a real person (crowd blur, poster, reflection...)."""
        return self.tag == "mask"

    @property
    def head_ignored(self) -> bool:
        return bool(self.head_attr.get("ignore", 0))

    @property
    def body_ignored(self) -> bool:
        return bool(self.extra.get("ignore", 0))


@dataclass(frozen=True)
class OdgtRecord:
    """One line of an `.odgt` file: an image ID and its boxes; `line` is 1-based."""

    id: str
    gtboxes: tuple[GtBox, ...]
    path: Path
    line: int


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(number: Any) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond any float: 1e400 written out in digits
        return False


def _box(value: Any, where: str) -> Box:
    if not isinstance(value, list) or len(value) != 4:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise DataError(f"{where}: expected [x, y, w, h] (4 numbers), got {got}")
    for item in value:
        if not _is_number(item) or not _finite(item):
            raise DataError(f"{where}: expected a finite number, got {quote(item)}")
    x, y, w, h = (float(v) for v in value)
    return x, y, w, h


def _flags(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected an object, got {type(value).__name__}")
    for key in ("ignore", "occ", "unsure"):
        if key in value and not _is_number(value[key]):
            raise DataError(f"{where}.{key}: expected a number, got {quote(value[key])}")
    return value


def _gtbox(entry: Any, where: str) -> GtBox:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    tag = entry.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise DataError(f"{where}.tag: expected a string, got {quote(tag)}")
    boxes = {name: _box(entry[name], f"{where}.{name}") for name in ("hbox", "fbox", "vbox") if name in entry}
    flags = {name: _flags(entry[name], f"{where}.{name}") for name in ("head_attr", "extra") if name in entry}
    return GtBox(tag=tag, **boxes, **flags)


def _image_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a non-empty string, got {quote(value)}")
    # The ID becomes a file name and a line of a list file.
    if value in (".", "..") or any(c in value for c in "/\\\n\r\0"):
        raise DataError(f"{where}: {quote(value)} cannot be used as a file name")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:  # <ID>.jpg and <ID>.txt must fit in 255 bytes
        raise DataError(f"{where}: {quote(value)} is too long for a file name (over {MAX_ID_BYTES} bytes)")
    return value


def _record(text: str, path: Path, line: int) -> OdgtRecord:
    where = f"{path}:{line}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # a number of more digits than Python converts (sys.get_int_max_str_digits)
        raise DataError(f"{where}: invalid JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{where}: invalid JSON (arrays or objects nested too deeply)") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "ID" not in obj:
        raise DataError(f"{where}: field 'ID' is missing")
    image_id = _image_id(obj["ID"], f"{where}: field 'ID'")
    entries = obj.get("gtboxes", [])
    if not isinstance(entries, list):
        raise DataError(f"{where}: field 'gtboxes': expected a list, got {type(entries).__name__}")
    boxes = tuple(_gtbox(entry, f"{where}: field 'gtboxes[{i}]'") for i, entry in enumerate(entries))
    return OdgtRecord(image_id, boxes, path, line)


def parse_odgt(path: PathLike) -> Iterator[OdgtRecord]:
    """Stream the records of an `.odgt` file (one JSON object a line; blank lines skipped).

    Missing optional keys are allowed anywhere (a `mask` entry usually has only fbox and
    vbox). A malformed record raises DataError naming the file, the line and the field;
    a missing file raises DarknetIOError.
    """
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DarknetIOError(f"{path}: annotation file not found") from None
    except OSError as exc:
        raise DarknetIOError(f"{path}: cannot read annotation file: {exc.strerror}") from None
    with f:
        number = 0
        try:
            for number, text in enumerate(f, start=1):
                if text.strip():
                    yield _record(text, path, number)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{number + 1}: not UTF-8 text ({exc.reason})") from None


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class _Rules:
    width: int
    height: int
    min_size: float
    honour_ignore: bool
    include_vbox: bool

    def fields(self, gt: GtBox) -> list[tuple[int, Optional[Box], bool]]:
        """(class id, box, ignored) for every class the options ask for."""
        chosen = [(0, gt.hbox, gt.head_ignored), (1, gt.fbox, gt.body_ignored)]
        if self.include_vbox:
            chosen.append((2, gt.vbox, gt.body_ignored))
        return chosen


def clip_box(box: Box, image_w: int, image_h: int) -> Optional[tuple[float, float, float, float]]:
    """The intersection of a pixel box with the image as (x1, y1, x2, y2); None when empty."""
    x, y, w, h = box
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(image_w)), min(y + h, float(image_h))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _label_lines(record: OdgtRecord, image_w: int, image_h: int, rules: _Rules,
                 kept: Counter, dropped: Counter, sizes: list[tuple[float, float]]) -> list[str]:
    """YOLO label lines of one image; counts kept boxes by class id and drops by reason;
    appends each kept box's size in network pixels to `sizes`."""
    lines = []
    for gt in record.gtboxes:
        for class_id, box, ignored in rules.fields(gt):
            if box is None:
                continue
            if gt.is_mask:
                dropped["mask"] += 1
                continue
            if rules.honour_ignore and ignored:
                dropped["ignored"] += 1
                continue
            clipped = clip_box(box, image_w, image_h)
            if clipped is None:
                dropped["outside"] += 1
                continue
            x1, y1, x2, y2 = clipped
            net_w, net_h = (x2 - x1) * rules.width / image_w, (y2 - y1) * rules.height / image_h
            if net_w < rules.min_size or net_h < rules.min_size:
                dropped["too_small"] += 1
                continue
            kept[class_id] += 1
            sizes.append((net_w, net_h))
            cx, cy = (x1 + x2) / 2 / image_w, (y1 + y2) / 2 / image_h
            w, h = (x2 - x1) / image_w, (y2 - y1) / image_h
            lines.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


# --------------------------------------------------------------------------- output files


@dataclass(frozen=True)
class _Image:
    id: str
    source: Path
    label_text: str


def _atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename; leave an identical file untouched."""
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass  # unreadable or not text: simply replace it
    try:
        with replacing(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DarknetIOError(f"{path}: cannot write: {exc.strerror}") from None


def _same_link(source: Path, target: Path, mode: str) -> bool:
    if mode == "symlink":
        return target.is_symlink() and os.readlink(target) == str(source)
    if not target.is_file() or target.is_symlink():
        return False
    if mode == "hardlink":
        return os.path.samefile(source, target)
    return filecmp.cmp(source, target, shallow=True)


def _link(source: Path, target: Path, mode: str) -> None:
    """Make `target` show the image `source` (symlink, hard link or copy), atomically."""
    if os.path.lexists(target) and _same_link(source, target, mode):
        return
    try:
        with replacing(target) as temporary:
            if mode == "symlink":
                os.symlink(source, temporary)
            elif mode == "hardlink":
                os.link(source, temporary)
            else:
                shutil.copy2(source, temporary)
    except OSError as exc:
        raise DarknetIOError(f"{target}: cannot {mode} {source}: {exc.strerror}") from None


def _read_manifest(out_dir: Path) -> set[str]:
    try:
        return set((out_dir / MANIFEST).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError) as exc:
        raise DarknetIOError(f"{out_dir / MANIFEST}: cannot read prepare()'s list of its files: {exc}") from None


def _claim(out_dir: Path, relative_paths: list[str]) -> None:
    """Refuse to overwrite files this function did not write; then record the ones it will.

    The record (a manifest in out_dir) is written first, so an interrupted run still
    knows its own files the next time.
    """
    owned = _read_manifest(out_dir)
    foreign = [p for p in relative_paths if p not in owned and os.path.lexists(out_dir / p)]
    if foreign:
        raise DarknetIOError(
            f"{out_dir}: {len(foreign)} file(s) that prepare() did not write are in the way, "
            f"e.g. {quote(foreign[0])}; move them or choose another out_dir")
    _atomic_write_text(out_dir / MANIFEST, "".join(f"{p}\n" for p in sorted(owned | set(relative_paths))))


# --------------------------------------------------------------------------- prepare


@dataclass
class PrepareSummary:
    """What prepare() wrote, kept and dropped.

    boxes: kept boxes per class name; dropped: boxes left out per reason (`mask`: the
    entry is a mask region; `ignored`: an ignore flag, with honour_ignore; `outside`: no
    area inside the image; `too_small`: under min_size network pixels wide or high).
    missing_images / unreadable_images: IDs whose image is absent or not an image; these
    images are left out of the lists.
    """

    out_dir: Path
    data_file: Path
    names: list[str]
    train_images: int
    val_images: int
    boxes: dict[str, int]
    dropped: dict[str, int]
    missing_images: list[str]
    unreadable_images: list[str]
    cfg_file: Optional[Path] = None
    anchors: Optional[Any] = None  # an AnchorResult when a cfg was written

    @property
    def images(self) -> int:
        return self.train_images + self.val_images

    def report(self) -> str:
        kept = ", ".join(f"{n} {name}" for name, n in self.boxes.items())
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items())
        lines = [f"{self.images} images ({self.train_images} train, {self.val_images} val) -> {self.data_file}",
                 f"boxes kept: {kept}", f"boxes dropped: {dropped}",
                 f"images missing: {len(self.missing_images)}, unreadable: {len(self.unreadable_images)}"]
        if self.cfg_file is not None:
            lines.append(f"cfg: {self.cfg_file}")
        return "\n".join(lines)


def _check_out_dir(root: Path, out_dir: Path) -> None:
    if out_dir.resolve() == root.resolve():
        raise DataError(f"{out_dir}: out_dir must not be the dataset root; prepare() never writes there")
    # darknet turns an image path's first `/images/` or `/JPEGImages/` into `/labels/`;
    # such a folder above out_dir would send it to look for labels elsewhere.
    text = out_dir.resolve().as_posix() + "/"
    for folder in ("/images/", "/JPEGImages/"):
        if folder in text:
            raise DataError(f"{out_dir}: a folder named {folder.strip('/')!r} in out_dir's path would make "
                            "darknet look for labels in the wrong place; choose another out_dir")


def _split_images(odgt: Path, images_dir: Path, rules: _Rules, limit: Optional[int], seen: dict[str, str],
                  kept: Counter, dropped: Counter, sizes: list, missing: list, unreadable: list,
                  progress: Progress) -> list[_Image]:
    """Label text of every usable image of one `.odgt`, in file order."""
    images = []
    count = 0
    for count, record in enumerate(parse_odgt(odgt), start=1):
        if limit is not None and count > limit:
            break
        progress.update(count)
        where = f"{record.path}:{record.line}"
        if record.id in seen:
            raise DataError(f"{where}: field 'ID': {quote(record.id)} already appears at {seen[record.id]}")
        seen[record.id] = where
        source = images_dir / f"{record.id}.jpg"
        if not source.is_file():
            missing.append(record.id)
            continue
        try:
            size = image_size(source)
        except DataError:  # a header claiming an absurd size: as unreadable as a broken file
            size = None
        if size is None:
            unreadable.append(record.id)
            continue
        lines = _label_lines(record, size[0], size[1], rules, kept, dropped, sizes)
        images.append(_Image(record.id, source.absolute(), "".join(f"{line}\n" for line in lines)))
    if count == 0:
        raise DataError(f"{odgt}: no records (empty annotation file)")
    return images


def _write_cfg(out_dir: Path, arch: str, names: list[str], width: int, height: int,
               sizes: list, seed: int, cfg_options: Mapping[str, Any]) -> tuple[Path, Any]:
    from .anchors import kmeans_anchors  # needs the compiled engine
    from .cfg import write_cfg

    k = CFG_CLUSTERS[arch]
    if len(sizes) < k:
        raise DataError(f"{out_dir}: {len(sizes)} kept boxes are too few for {k} anchors")
    anchors = kmeans_anchors(np.asarray(sizes, dtype=np.float32), k, seed)
    path = out_dir / f"{arch}-crowdhuman-{width}x{height}.cfg"
    write_cfg(path, arch, classes=len(names), width=width, height=height, anchors=anchors.as_int_pairs(),
              **dict(cfg_options))
    return path, anchors


def prepare(root: PathLike, out_dir: PathLike, width: int = 416, height: int = 416, *,
            min_size: float = 5, honour_ignore: bool = False, include_vbox: bool = False,
            limit: Optional[int] = None, absolute_paths: bool = True, link: str = "symlink",
            write_cfg: Optional[str] = None, cfg_options: Optional[Mapping[str, Any]] = None,
            anchor_seed: int = 0, progress: bool = True) -> PrepareSummary:
    """Turn a CrowdHuman folder into a darknet dataset.

    Reads `root/annotation_train.odgt`, `root/annotation_val.odgt` and `root/Images/<ID>.jpg`;
    writes nothing under `root`. Writes under `out_dir`:

    - `data/<ID>.jpg`: a link to the original image (`link`: "symlink" (default, absolute
      target), "hardlink" or "copy"), and beside it `data/<ID>.txt`, its YOLO labels. The
      folder is deliberately not called `images`: darknet looks for labels beside an image
      unless its path contains `/images/` or `/JPEGImages/`, so labels beside the image
      work for absolute and relative lists alike;
    - `train.txt`, `test.txt`: one image path a line, every image of the split with an
      image file, also those without a kept box (their label file is empty). Paths are
      absolute, or with absolute_paths=False relative to out_dir (run darknet from there);
    - `crowdhuman.names` (`head`, `person`, and `vbox` with include_vbox) and
      `crowdhuman.data` (classes, train, valid, names, backup); an empty `backup/` folder;
    - with write_cfg ('yolov4', 'yolov4-tiny' or 'yolov4-tiny-3l'): anchors by
      calc_anchors' k-means (9 clusters, 6 for yolov4-tiny, seeded by anchor_seed) over the
      kept train and val boxes in network pixels, and `<arch>-crowdhuman-<W>x<H>.cfg` by
      darknet_py.cfg.write_cfg (cfg_options are passed on to it);
    - `.darknet_py_prepare`: the list of files it writes. A later run overwrites only
      those; it never deletes a file, and refuses to start when a file it did not write is
      in the way.

    Labels: class 0 from `hbox`, 1 from `fbox`, 2 from `vbox` (include_vbox); `mask` entries
    are skipped; ignore flags (head_attr.ignore for hbox, extra.ignore for fbox/vbox) drop
    boxes only with honour_ignore. Each box is clipped to its intersection with the image,
    then dropped when the clipped width or height, rescaled to width x height network
    pixels, is under min_size. `limit` keeps the first N records of each split.
    Running it twice gives the same files; each file is written atomically. `progress`: tqdm
    bars on a terminal (widgets in a notebook), counter lines in logs, nothing when False.
    """
    root, out_dir = Path(root), Path(out_dir)
    if write_cfg is not None and write_cfg not in CFG_CLUSTERS:
        raise DataError(f"write_cfg must be one of {', '.join(CFG_CLUSTERS)}, got {write_cfg!r}")
    if link not in LINK_MODES:
        raise DataError(f"link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    if width <= 0 or height <= 0:
        raise DataError(f"width and height must be positive, got {width}x{height}")
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    _check_out_dir(root, out_dir)

    rules = _Rules(width, height, min_size, honour_ignore, include_vbox)
    names = list(CLASS_NAMES) + ([VBOX_CLASS_NAME] if include_vbox else [])
    kept, dropped, sizes, missing, unreadable = Counter(), Counter(), [], [], []
    seen: dict[str, str] = {}
    splits = {}
    for split in ("train", "val"):
        with Progress(limit, f"reading {split}", enabled=progress, unit="records") as bar:
            splits[split] = _split_images(root / f"annotation_{split}.odgt", root / "Images", rules, limit, seen,
                                          kept, dropped, sizes, missing, unreadable, bar)

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_name = [f"{write_cfg}-crowdhuman-{width}x{height}.cfg"] if write_cfg else []
    all_images = splits["train"] + splits["val"]
    _claim(out_dir, ["train.txt", "test.txt", "crowdhuman.names", "crowdhuman.data", *cfg_name]
           + [f"{DATA_DIR}/{image.id}{ext}" for image in all_images for ext in (".jpg", ".txt")])
    (out_dir / DATA_DIR).mkdir(exist_ok=True)
    (out_dir / "backup").mkdir(exist_ok=True)

    with Progress(len(all_images), "writing labels", enabled=progress, unit="images") as bar:
        for done, image in enumerate(all_images, start=1):
            _link(image.source, out_dir / DATA_DIR / f"{image.id}.jpg", link)
            _atomic_write_text(out_dir / DATA_DIR / f"{image.id}.txt", image.label_text)
            bar.update(done)

    def shown(relative: str) -> str:
        return str(out_dir.absolute() / relative) if absolute_paths else relative

    for split, list_name in (("train", "train.txt"), ("val", "test.txt")):
        paths = [shown(f"{DATA_DIR}/{image.id}.jpg") for image in splits[split]]
        _atomic_write_text(out_dir / list_name, "".join(f"{p}\n" for p in paths))
    _atomic_write_text(out_dir / "crowdhuman.names", "".join(f"{n}\n" for n in names))
    data_file = out_dir / "crowdhuman.data"
    _atomic_write_text(data_file, f"classes = {len(names)}\ntrain = {shown('train.txt')}\n"
                                  f"valid = {shown('test.txt')}\nnames = {shown('crowdhuman.names')}\n"
                                  f"backup = {shown('backup')}/\n")

    summary = PrepareSummary(
        out_dir=out_dir, data_file=data_file, names=names,
        train_images=len(splits["train"]), val_images=len(splits["val"]),
        boxes={name: kept[i] for i, name in enumerate(names)},
        dropped={reason: dropped[reason] for reason in DROP_REASONS},
        missing_images=missing, unreadable_images=unreadable)
    if write_cfg:
        summary.cfg_file, summary.anchors = _write_cfg(out_dir, write_cfg, names, width, height, sizes,
                                                       anchor_seed, cfg_options or {})
    return summary
