"""Detection on videos and camera streams (darknet's `detector demo`), read and written by OpenCV."""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import cv2
import numpy as np

from ._atomic import replacing
from .detect import Detection
from .drawing import draw_detections
from .errors import DarknetIOError, ShapeError

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network

VideoSource = Union[str, Path, int]
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 25.0  # when a stream does not say (cameras often report 0)


@dataclass(frozen=True)
class VideoFrame:
    """One frame of a video and what was detected on it (boxes in pixels of `image`)."""

    index: int                    # 0-based position in the stream
    image: np.ndarray             # BGR uint8 (H, W, 3), as OpenCV decoded it
    detections: list[Detection]


def open_video(source: VideoSource) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture for a file path or a camera index (an int, or a string of digits)."""
    if isinstance(source, bool):
        raise ShapeError(f"a video source is a path or a camera index, got {source!r}")
    camera = isinstance(source, int) or (isinstance(source, str) and source.isdigit())
    if not camera and not Path(source).is_file():
        raise DarknetIOError(f"{source}: video file not found")
    capture = cv2.VideoCapture(int(source) if camera else str(source))
    if not capture.isOpened():
        capture.release()
        what = f"camera {int(source)}" if camera else f"{source}"
        raise DarknetIOError(f"{what}: OpenCV cannot open this video source")
    return capture


def frames_per_second(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS


def detect_video(net: "Network", source: VideoSource, *, thresh: float = 0.25, nms: float = 0.45,
                 batch: Optional[int] = None, max_frames: Optional[int] = None) -> Iterator[VideoFrame]:
    """Yield every frame of `source` with its detections, in order.

    Frames are decoded by OpenCV and sent through the engine `batch` at a time (default: the
    network's batch), so a frame is yielded once its batch is done. `max_frames` stops early
    (useful for cameras). The stream is closed when the generator ends or is closed.
    """
    yield from _detect_capture(net, open_video(source), thresh, nms, batch, max_frames)


def _detect_capture(net: "Network", capture: cv2.VideoCapture, thresh: float, nms: float, batch: Optional[int],
                    max_frames: Optional[int]) -> Iterator[VideoFrame]:
    """detect_video's loop over an opened capture, which it releases when done."""
    try:
        batch = net.batch if batch is None else batch
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ShapeError(f"batch must be a positive integer, got {batch!r}")
        index = 0
        pending: list[np.ndarray] = []
        while max_frames is None or index + len(pending) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            pending.append(frame)
            if len(pending) == batch:
                yield from _detect_frames(net, pending, index, thresh, nms)
                index += len(pending)
                pending = []
        if pending:
            yield from _detect_frames(net, pending, index, thresh, nms)
    finally:
        capture.release()


def _detect_frames(net: "Network", frames: list[np.ndarray], first: int, thresh: float,
                   nms: float) -> Iterator[VideoFrame]:
    for offset, (image, found) in enumerate(zip(frames, net.detect_batch(frames, thresh=thresh, nms=nms))):
        yield VideoFrame(first + offset, image, found)


@dataclass(frozen=True)
class VideoSummary:
    """What annotate_video did."""

    frames: int
    detections: int
    seconds: float                # wall time, decoding and writing included
    output: Optional[Path]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def annotate_video(net: "Network", source: VideoSource, output: Optional[Union[str, Path]] = None, *,
                   thresh: float = 0.25, nms: float = 0.45, batch: Optional[int] = None,
                   max_frames: Optional[int] = None, on_frame=None) -> VideoSummary:  # noqa: ANN001
    """darknet's `detector demo`: detect on every frame of `source`; with `output`, write the
    frames with their boxes drawn as a video (same size and frame rate; the codec from the
    suffix: mp4v for .mp4/.mov, MJPG for .avi/.mkv), atomically. `on_frame(VideoFrame)` is
    called for each frame (e.g. to print its detections)."""
    output_path = Path(output) if output is not None else None
    if output_path is not None and output_path.suffix.lower() not in FOURCC:
        raise ShapeError(f"{output_path}: the output video must end in one of {', '.join(sorted(FOURCC))}")
    began = time.perf_counter()
    frames = detections = 0
    writer = None
    capture = open_video(source)  # opened once: its frame rate for the writer, then its frames
    fps = frames_per_second(capture)
    with replacing(output_path, keep_suffix=True) if output_path is not None else nullcontext() as temporary:
        try:
            for frame in _detect_capture(net, capture, thresh, nms, batch, max_frames):
                if temporary is not None:
                    if writer is None:
                        writer = _open_writer(temporary, output_path.suffix.lower(), fps, frame.image)
                    writer.write(draw_detections(frame.image, frame.detections))
                frames += 1
                detections += len(frame.detections)
                if on_frame is not None:
                    on_frame(frame)
        finally:
            if writer is not None:
                writer.release()
        if temporary is not None and writer is None:
            raise DarknetIOError(f"{source}: no frame could be read, nothing to write to {output_path}")
    return VideoSummary(frames, detections, time.perf_counter() - began, output_path)


def _open_writer(path: Path, suffix: str, fps: float, first: np.ndarray) -> cv2.VideoWriter:
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps, (width, height))
    if not writer.isOpened():
        raise DarknetIOError(f"{path}: OpenCV cannot write a {FOURCC[suffix]} video here")
    return writer
