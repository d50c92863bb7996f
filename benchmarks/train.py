"""Training speed: one darknet_py training iteration of yolov4-tiny-416 at batch 16.

Prints images per second for the training iteration (forward in training mode, yolo deltas,
backward, SGD update) as a multiple of darknet_py's own fp32 inference forward of the same 16
images, measured in the same run (and OpenCV DNN's forward as a yardstick). A training step
costs roughly three forwards (forward, backward to inputs, backward to weights), so a ratio
near 3 means the backward pass is as fast as the forward. The engine uses DARKNET_PY_THREADS
threads, else every CPU.

    python benchmarks/train.py [--batch 16] [--size 416] [--repeats 5]
    python benchmarks/train.py --distributed [--processes 1,2] ...   (see benchmarks/train_distributed.py)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder
from forward import cpu_model  # benchmarks/forward.py


def seconds_in_turns(runs, repeats: int) -> list[float]:
    """Median seconds of each workload, the workloads timed in turns (first, second, first, ...)
    after a warm-up call each (buffers are allocated on first use): on a shared machine whose
    speed drifts over seconds, they all see the same periods, so their ratios hold still."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, kept in zip(runs, times):
            start = time.perf_counter()
            run()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


def random_truths(rng: np.random.Generator, batch: int, boxes: int = 20) -> np.ndarray:
    truths = np.zeros((batch, 90, 5), np.float32)
    truths[:, :boxes, :2] = rng.uniform(0.1, 0.9, (batch, boxes, 2))
    truths[:, :boxes, 2:4] = rng.uniform(0.02, 0.4, (batch, boxes, 2))
    truths[:, :boxes, 4] = rng.integers(0, 2, (batch, boxes))
    return truths


def main() -> None:
    if "--distributed" in sys.argv[1:]:  # train(distributed=True) under mpirun: benchmarks/train_distributed.py
        from train_distributed import main as distributed

        return distributed([arg for arg in sys.argv[1:] if arg != "--distributed"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
    truths = random_truths(rng, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "yolov4-tiny.cfg"
        cfg_builder.write_cfg(cfg, "yolov4-tiny", classes=2, width=args.size, height=args.size,
                              batch=args.batch, subdivisions=1)
        weights = Path(tmp) / "random.weights"
        with dn.Network(cfg, batch=args.batch, seed=1) as net:
            net.save_weights(weights)
            params = net.params

            def step() -> None:
                net.train_step(images, truths, iteration=1000)
                net.update(params.learning_rate, params.momentum, params.decay, args.batch)

            train_s, forward_s = seconds_in_turns([step, lambda: net.forward(images)], args.repeats)
            threads = net.threads
        cv_net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        names = cv_net.getUnconnectedOutLayersNames()

        def opencv_forward() -> None:
            cv_net.setInput(images)
            cv_net.forward(names)

        (cv_s,) = seconds_in_turns([opencv_forward], args.repeats)
    print(f"machine: {os.cpu_count()} cores, CPU {cpu_model()}; darknet_py {threads} threads; "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)")
    print(f"yolov4-tiny-{args.size}, batch {args.batch}: training iteration {train_s:.2f} s = "
          f"{args.batch / train_s:.1f} images/s")
    print(f"darknet_py fp32 inference forward of the same batch: {forward_s:.2f} s; "
          f"ratio training / forward {train_s / forward_s:.2f}")
    print(f"OpenCV DNN inference forward of the same batch: {cv_s:.2f} s = {args.batch / cv_s:.1f} images/s; "
          f"ratio training / OpenCV forward {train_s / cv_s:.2f}")


if __name__ == "__main__":
    main()
