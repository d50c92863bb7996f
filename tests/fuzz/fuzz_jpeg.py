"""Fuzz target: the JPEG-header size reader (`imagesize.jpeg_size`, and `check_jpeg_header`,
which refuses absurd sizes) on fuzzed bytes."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import darknet_py as dn  # noqa: E402
from darknet_py import imagesize  # noqa: E402

NAME = "jpeg"


def one_input(data: bytes) -> None:
    size = imagesize.jpeg_size(io.BytesIO(data))
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and 1 <= v <= 65535 for v in size)), size
    path = _harness.scratch_file("fuzz.jpg", data)
    try:
        checked = imagesize.check_jpeg_header(path)
    except dn.DataError:
        assert size is not None and size[0] * size[1] > imagesize.MAX_IMAGE_PIXELS
        return
    assert checked == size


def seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    out = []
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_OPTIMIZE, 1],
                   [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]):
        ok, encoded = cv2.imencode(".jpg", image, params)
        out.append(encoded.tobytes()[:1024])  # the header; the size reader never reads the scan
    ok, grey = cv2.imencode(".jpg", image[:, :, 0])
    out.append(grey.tobytes()[:1024])
    ok, png = cv2.imencode(".png", image)
    out.append(png.tobytes()[:256])
    return out


if __name__ == "__main__":
    _harness.main(sys.modules[__name__])
