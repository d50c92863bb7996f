"""darknet's dataset files: the .data file, .names, image lists and YOLO label files.

Relative paths are resolved as darknet does (against the current directory) and,
when nothing exists there, against the directory of the file that names them, so a
dataset folder can be moved as a whole.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ._typing import PathLike
from .errors import DarknetIOError, DataError, quote


_FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_CLASSES = 65536  # the engine's limit on a [yolo] layer's classes (DN_MAX_CLASSES)


@dataclass(frozen=True)
class DataConfig:
    """The contents of a darknet `.data` file."""

    path: Path
    classes: int
    train: Optional[Path]
    valid: Optional[Path]
    names_path: Optional[Path]
    names: list[str]
    backup: Optional[Path]


def _resolve(value: str, base_dir: Path) -> Path:
    try:
        candidate = Path(value).expanduser()
    except RuntimeError:  # `~name` of no known user: the path as written
        candidate = Path(value)
    # os.path.exists, not Path.exists: a name too long for the file system is "not there", not OSError
    if candidate.is_absolute() or os.path.exists(candidate):
        return candidate
    beside = base_dir / candidate
    return beside if os.path.exists(beside) else candidate


def _read_text_lines(path: Path, what: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # /dev/zero or a FIFO would never end
                raise DarknetIOError(f"{path}: {what} is not a regular file")
            text = f.read()
    except FileNotFoundError:
        raise DarknetIOError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None
    except DarknetIOError:
        raise
    except OSError as exc:
        raise DarknetIOError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if "\0" in text:  # a binary file; and no path may hold a NUL (open() would raise ValueError)
        line = text.count("\n", 0, text.index("\0")) + 1
        raise DataError(f"{path}:{line}: {what} holds binary data (a NUL byte), not text")
    return text.splitlines()


def read_names(path: PathLike) -> list[str]:
    """Class names, one per non-empty line."""
    path = Path(path)
    return [line.strip() for line in _read_text_lines(path, ".names file") if line.strip()]


def read_data_file(path: PathLike) -> DataConfig:
    """Parse a `.data` file (`classes = 2`, `train = ...`, `valid = ...`, `names = ...`, `backup = ...`)."""
    path = Path(path)
    values: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(_read_text_lines(path, ".data file"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            raise DataError(f"{path}:{number}: expected 'key = value', got {quote(line)}")
        key, value = (part.strip() for part in line.split("=", 1))
        values.setdefault(key, (value, number))  # darknet: the first occurrence wins
    base = path.parent
    if "classes" not in values:
        raise DataError(f"{path}: missing 'classes = N'")
    classes_text, classes_line = values["classes"]
    if not re.fullmatch(r"\d{1,9}", classes_text) or not 1 <= int(classes_text) <= MAX_CLASSES:
        raise DataError(f"{path}:{classes_line}: classes must be an integer in [1, {MAX_CLASSES}], "
                        f"got {quote(classes_text)}")
    classes = int(classes_text)

    def optional_path(key: str) -> Optional[Path]:
        if key not in values or not values[key][0]:
            return None
        return _resolve(values[key][0], base)

    names_path = optional_path("names")
    names = read_names(names_path) if names_path is not None else []
    if names and len(names) < classes:
        raise DataError(f"{names_path}: {len(names)} names for classes = {classes} in {path}")
    if not names:
        names = [str(i) for i in range(classes)]
    return DataConfig(
        path=path,
        classes=classes,
        train=optional_path("train"),
        valid=optional_path("valid"),
        names_path=names_path,
        names=names[:classes],
        backup=optional_path("backup"),
    )


def read_image_list(path: PathLike) -> list[Path]:
    """Image paths of a train/valid list, one per non-empty line."""
    path = Path(path)
    base = path.parent
    return [_resolve(line.strip(), base) for line in _read_text_lines(path, "image list") if line.strip()]


def label_path_for(image_path: PathLike) -> Path:
    """darknet's rule: `/images/` or `/JPEGImages/` -> `/labels/`, extension -> `.txt`."""
    text = str(image_path)
    for folder in ("/images/", "/JPEGImages/"):
        if folder in text:
            head, tail = text.rsplit(folder, 1)
            text = head + "/labels/" + tail
            break
    return Path(os.path.splitext(text)[0] + ".txt")


def read_labels(path: PathLike) -> np.ndarray:
    """A YOLO label file as a float32 array (n, 5): class, cx, cy, w, h (relative to the image).

    A missing file raises DarknetIOError (callers that treat it as "no boxes" catch it);
    a malformed line raises DataError naming the file and line.
    """
    path = Path(path)
    rows = []
    for number, raw in enumerate(_read_text_lines(path, "label file"), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DataError(f"{path}:{number}: expected 'class cx cy w h', got {quote(raw.strip())}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DataError(f"{path}:{number}: not a number in {quote(raw.strip())}") from None
        if not values[0].is_integer() or values[0] < 0:
            raise DataError(f"{path}:{number}: class id must be a non-negative integer, got {quote(fields[0])}")
        if not all(np.isfinite(values)):
            raise DataError(f"{path}:{number}: non-finite value in {quote(raw.strip())}")
        if max(abs(v) for v in values) > _FLOAT32_MAX:  # would be inf in the float32 array
            raise DataError(f"{path}:{number}: value beyond float32 range in {quote(raw.strip())}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)
