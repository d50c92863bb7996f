"""Video: Network.detect_video, annotate_video and `darknet-py detector demo` on a video the test writes."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import darknet_py as dn
from darknet_py.video import annotate_video

from helpers import write_arch_cfg, write_random_weights, write_text

FRAMES, WIDTH, HEIGHT = 12, 192, 144


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame mp4 made from synthesized CrowdHuman-format images, a network and a .data."""
    root = tmp_path_factory.mktemp("video")
    synthesized = dn.crowdhuman.synthesize(root / "ch", train=FRAMES, val=1, seed=3, width_range=(160, 240))
    images = sorted((synthesized.root / "Images").glob("*.jpg"))[:FRAMES]
    path = root / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), (WIDTH, HEIGHT)))
    writer.release()
    cfg = write_arch_cfg(root, "yolov4-tiny", width=160, height=160)
    weights = write_random_weights(cfg, root / "w.weights")
    names = write_text(root / "ch.names", "head\nperson\n")
    data = write_text(root / "ch.data", f"classes = 2\nnames = {names}\n")
    return dict(path=path, cfg=cfg, weights=weights, data=data, root=root)


def decoded_frames(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_detect_video_equals_detect_on_the_same_frames(clip):
    frames = decoded_frames(clip["path"])
    assert len(frames) == FRAMES
    with dn.Network(clip["cfg"], clip["weights"], batch=5, names=["head", "person"]) as net:
        got = list(net.detect_video(clip["path"], thresh=0.2))  # batches of 5, 5 and 2
        expected = [net.detect(frame, thresh=0.2) for frame in frames]
        assert [f.index for f in got] == list(range(FRAMES))
        for frame, image, dets in zip(got, frames, expected):
            np.testing.assert_array_equal(frame.image, image)
            assert frame.detections == dets
        assert sum(len(d) for d in expected) > 0  # the comparison covers real detections
        first = list(net.detect_video(str(clip["path"]), max_frames=3, batch=2))
        assert [f.index for f in first] == [0, 1, 2]


def test_annotate_video_writes_a_playable_video(clip, tmp_path):
    seen = []
    with dn.Network(clip["cfg"], clip["weights"], batch=4) as net:
        summary = annotate_video(net, clip["path"], tmp_path / "out.avi", thresh=0.2, on_frame=seen.append)
    assert summary.frames == FRAMES and summary.output == tmp_path / "out.avi" and summary.fps > 0
    assert summary.detections == sum(len(f.detections) for f in seen)
    written = decoded_frames(tmp_path / "out.avi")
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, WIDTH, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.avi"]  # no temporary left


def test_cli_detector_demo(clip, tmp_path):
    out = tmp_path / "annotated.mp4"
    cli = [sys.executable, "-m", "darknet_py.cli", "detector", "demo", str(clip["data"]), str(clip["cfg"]),
           str(clip["weights"])]
    done = subprocess.run(cli + [str(clip["path"]), "-out_filename", str(out), "-thresh", "0.2", "-dont_show"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:FRAMES]] == [f"frame {i}" for i in range(FRAMES)]
    assert lines[FRAMES].startswith(f"{FRAMES} frames, ") and "FPS: " in lines[FRAMES]
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (WIDTH, HEIGHT)
    assert len(decoded_frames(out)) == FRAMES

    # the detections printed are detect()'s on the decoded frames
    with dn.Network(clip["cfg"], clip["weights"], names=["head", "person"]) as net:
        for i, frame in enumerate(decoded_frames(clip["path"])):
            found = ", ".join(f"{d.name}: {100 * d.confidence:.0f}%" for d in net.detect(frame, thresh=0.2)) or "-"
            assert lines[i] == f"frame {i}: {found}"


def test_video_errors(clip, tmp_path):
    cli = [sys.executable, "-m", "darknet_py.cli", "detector", "demo", str(clip["data"]), str(clip["cfg"]),
           str(clip["weights"])]
    done = subprocess.run(cli + [str(tmp_path / "missing.mp4")], capture_output=True, text=True)
    assert done.returncode == 1 and "missing.mp4: video file not found" in done.stderr
    not_a_video = write_text(tmp_path / "notes.mp4", "not a video")
    with dn.Network(clip["cfg"], clip["weights"]) as net:
        with pytest.raises(dn.DarknetIOError, match="notes.mp4"):
            annotate_video(net, not_a_video, tmp_path / "out.mp4")
        with pytest.raises(dn.ShapeError, match="must end in one of"):
            annotate_video(net, clip["path"], tmp_path / "out.gif")
        with pytest.raises(dn.ShapeError, match="batch"):
            list(net.detect_video(clip["path"], batch=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]
