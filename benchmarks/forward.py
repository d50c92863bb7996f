"""Forward-pass speed of darknet_py against OpenCV DNN's darknet importer, in one process.

Prints milliseconds per image (median of several runs, batch 1) and the ratio
darknet_py / OpenCV (below 1 means darknet_py is faster). Random weights: speed does
not depend on the values.

    python benchmarks/forward.py [--repeats 5] [--arch yolov4-tiny yolov4]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: first-touch page faults, BLAS thread start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench(arch: str, size: int, repeats: int, workdir: Path) -> tuple[float, float]:
    cfg = workdir / f"{arch}.cfg"
    cfg_builder.write_cfg(cfg, arch, classes=80, width=size, height=size)
    weights = workdir / f"{arch}.weights"
    with dn.Network(cfg, seed=1) as net:
        net.save_weights(weights)
    blob = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    with dn.Network(cfg, weights) as net:
        ours = median_ms(lambda: net.forward(blob), repeats)
    cv_net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = cv_net.getUnconnectedOutLayersNames()

    def opencv_forward() -> None:
        cv_net.setInput(blob)
        cv_net.forward(names)

    theirs = median_ms(opencv_forward, repeats)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["yolov4-tiny", "yolov4"])
    parser.add_argument("--size", type=int, default=416)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); darknet_py {dn.__version__}")
    print(f"{'network':<22}{'darknet_py ms':>15}{'OpenCV ms':>12}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            ours, theirs = bench(arch, args.size, args.repeats, Path(tmp))
            print(f"{arch + '-' + str(args.size):<22}{ours:>15.1f}{theirs:>12.1f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
