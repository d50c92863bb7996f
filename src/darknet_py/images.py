"""The one image reader of data loading, evaluation, the CLI and the demo."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ._typing import PathLike
from .errors import ImageError
from .imagesize import check_jpeg_header


def read_image(path: PathLike) -> np.ndarray:
    """An image file as BGR uint8 (H, W, 3), decoded by OpenCV as darknet's imread(IMREAD_COLOR)
    does (greyscale and alpha images become 3 channels). ImageError (a DataError and a
    DarknetIOError) naming the file when it is missing or cannot be decoded, and DataError
    when its JPEG header claims an absurd size (refused before any pixel is allocated)."""
    path = Path(path)
    # checked first: cv2.imread would print a warning of its own. os.path.isfile: a name too long for
    # the file system is "not found", where Path.is_file raises OSError
    if not os.path.isfile(path):
        raise ImageError(f"{path}: image not found")
    check_jpeg_header(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: not an image OpenCV can decode")
    return image
