"""Image width and height in pixels without decoding the pixels (JPEG headers; OpenCV otherwise).

Sizes are those stored in the file: EXIF orientation is not applied.
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Optional

from ._typing import PathLike
from .errors import DataError

# Images larger than this are refused before anything is allocated for their pixels: OpenCV's own
# default limit (CV_IO_MAX_IMAGE_PIXELS), 1 gigapixel, 3 GiB as BGR.
MAX_IMAGE_PIXELS = 1 << 30


# Start-of-frame markers carry the frame size: baseline, extended, progressive and
# lossless, Huffman or arithmetic coded. C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])


def _read_exact(f: BinaryIO, n: int) -> Optional[bytes]:
    data = f.read(n)
    return data if len(data) == n else None


def _next_marker(f: BinaryIO) -> Optional[int]:
    """The next marker code, skipping 0xFF fill bytes; None at a corrupt or ended stream."""
    byte = _read_exact(f, 1)
    if byte != b"\xff":
        return None
    while byte == b"\xff":
        byte = _read_exact(f, 1)
        if byte is None:
            return None
    return byte[0]


def jpeg_size(f: BinaryIO) -> Optional[tuple[int, int]]:
    """(width, height) from the first start-of-frame segment, or None when the stream
    is not a JPEG or its header is damaged."""
    if _read_exact(f, 2) != b"\xff\xd8":
        return None
    while True:
        marker = _next_marker(f)
        if marker is None or marker == 0xD9 or marker == 0xDA:  # ended, or scan data before a frame
            return None
        if marker in _STANDALONE:
            continue
        length_bytes = _read_exact(f, 2)
        if length_bytes is None:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            frame = _read_exact(f, 5)  # precision, height, width
            if frame is None:
                return None
            _, height, width = struct.unpack(">BHH", frame)
            return (width, height) if width > 0 and height > 0 else None
        f.seek(length - 2, os.SEEK_CUR)


def check_jpeg_header(path: PathLike) -> Optional[tuple[int, int]]:
    """The size in a JPEG's header (None for another format or a damaged header, and when the
    file cannot be opened); DataError naming the file when it claims more than
    MAX_IMAGE_PIXELS, so that nothing tries to allocate its pixels."""
    try:
        with open(path, "rb") as f:
            size = jpeg_size(f)
    except OSError:
        return None
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: the JPEG header claims {size[0]}x{size[1]} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS} this reader accepts")
    return size


def image_size(path: PathLike) -> Optional[tuple[int, int]]:
    """(width, height) in pixels, or None when the file cannot be read as an image; DataError
    when its header claims more than MAX_IMAGE_PIXELS.

    JPEGs are measured from their header; other formats (or JPEGs whose header this
    reader does not understand) are decoded with OpenCV (which has its own size limit).
    """
    size = check_jpeg_header(path)
    if size is not None:
        return size
    import cv2  # only for the rare non-JPEG file

    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    return int(image.shape[1]), int(image.shape[0])
