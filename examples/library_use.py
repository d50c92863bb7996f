"""darknet_py inside another application: train with a callback that logs through the
application's `logging`, then load the detector once and run it on a stream of frames.

    python examples/library_use.py                           # everything synthesized
    python examples/library_use.py --source video.mp4        # frames of a video file
    python examples/library_use.py --source frames/ --cfg my.cfg --weights my.weights --names my.names

Without --cfg/--weights it first trains a tiny yolov4-tiny for a few iterations on a
synthesized CrowdHuman-format dataset (good enough to show the calls, not to detect well).
Without --source the frames are synthesized too. Files go under --work.
"""
import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

import darknet_py as dn

log = logging.getLogger("my_app.detector")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def train_small_model(work: Path, iterations: int) -> tuple[Path, Path, list[str]]:
    """(cfg, weights, class names) of a tiny detector trained on synthesized data; every
    iteration is logged through `log` by train()'s callback."""
    raw = dn.crowdhuman.synthesize(work / "crowdhuman", train=16, val=4, seed=0, width_range=(96, 192))
    dataset = dn.crowdhuman.prepare(raw.root, work / "dataset", 64, 64, write_cfg="yolov4-tiny",
                                    cfg_options=dict(batch=4, subdivisions=1, max_batches=iterations,
                                                     burn_in=1, learning_rate=0.004, mosaic=False))

    def on_iteration(p: dn.TrainProgress) -> bool:
        log.info("iteration %d/%d loss %.4f avg %.4f lr %.6f", p.iteration, p.max_batches, p.loss,
                 p.avg_loss, p.learning_rate)
        return True  # returning False would stop training cleanly (e.g. on an application's shutdown)

    result = dn.train(dataset.data_file, dataset.cfg_file, callback=on_iteration, seed=1, progress=False)
    return dataset.cfg_file, result.final_weights, dataset.names


def frames(source: Optional[Path], work: Path, count: int) -> Iterator[np.ndarray]:
    """BGR frames of a video file, of a folder's images (sorted by name), or synthesized."""
    if source is None:
        synthetic = dn.crowdhuman.synthesize(work / "frames", train=0, val=count, seed=7)
        source = synthetic.root / "Images"
    if source.is_dir():
        for path in sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]:
            image = cv2.imread(str(path))
            if image is not None:
                yield image
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise dn.DarknetIOError(f"{source}: cannot open video")
    try:
        for _ in range(count):
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
    finally:
        capture.release()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="video file or folder of images (default: synthesized)")
    parser.add_argument("--cfg", type=Path, help="your cfg (with --weights); default: train a tiny one")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--names", type=Path, help=".names file for --cfg")
    parser.add_argument("--work", type=Path, default=Path("darknet_py_library_use"), help="folder for files")
    parser.add_argument("--iterations", type=int, default=30, help="training iterations of the tiny model")
    parser.add_argument("--frames", type=int, default=10, help="frames to process")
    parser.add_argument("--thresh", type=float, default=0.25, help="detection threshold (0..1)")
    args = parser.parse_args(argv)
    if (args.cfg is None) != (args.weights is None):
        parser.error("--cfg and --weights go together")

    args.work.mkdir(parents=True, exist_ok=True)
    # The application owns logging; darknet_py's callback just calls into it.
    logging.basicConfig(filename=args.work / "app.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        if args.cfg is None:
            cfg, weights, names = train_small_model(args.work, args.iterations)
            print(f"trained {weights} (training log: {args.work / 'app.log'})")
        else:
            cfg, weights, names = args.cfg, args.weights, args.names
        # Load once; reuse for every frame (a Network is not cheap to create).
        with dn.Network(cfg, weights, names=names) as net:
            for index, frame in enumerate(frames(args.source, args.work, args.frames)):
                began = time.perf_counter()
                detections = net.detect(frame, thresh=args.thresh)
                milliseconds = 1000 * (time.perf_counter() - began)
                summary = ", ".join(f"{d.name} {d.confidence:.2f}" for d in detections[:5]) or "nothing"
                print(f"frame {index}: {len(detections)} detections in {milliseconds:.1f} ms: {summary}")
    except dn.DarknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
