"""Time darknet_py.data.BatchLoader: images/second of training batches with full augmentation.

    PYTHONPATH=src python benchmarks/data.py [--images 200] [--batches 20] [--workers N ...]

Synthesizes `--images` CrowdHuman-style JPEGs (320..640 pixels wide) into a temporary folder,
prepares them at 416x416, then times get() of consecutive batches of 16 at 416x416 with
jitter .3, hue .1, saturation 1.5, exposure 1.5, flip and mosaic, after two warm-up batches
(which also fill the label cache). Each worker count is timed on its own loader; the
caller consumes batches as fast as they come, so the figure is the loader's throughput.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from darknet_py.crowdhuman import prepare, synthesize
from darknet_py.data import Augmentation, BatchLoader
from darknet_py.datafile import read_data_file, read_image_list

SIZE, BATCH = 416, 16
FULL = Augmentation(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, flip=True, mosaic=True)


def images_per_second(paths: list[Path], classes: int, workers: int, batches: int) -> float:
    """Throughput of `batches` consecutive get() calls after two warm-up batches."""
    with BatchLoader(paths, classes=classes, batch=BATCH, width=SIZE, height=SIZE, augmentation=FULL,
                     workers=workers, prefetch=2) as loader:
        for index in range(2):
            loader.get(index)
        start = time.perf_counter()
        for index in range(2, 2 + batches):
            loader.get(index)
        return batches * BATCH / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({0, 2, os.cpu_count() or 1}))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "raw", train=args.images, val=1)
        config = read_data_file(prepare(root / "raw", root / "out", SIZE, SIZE).data_file)
        paths = read_image_list(config.train)
        print(f"{len(paths)} images, batches of {BATCH} at {SIZE}x{SIZE}, full augmentation with mosaic, "
              f"{os.cpu_count()} CPUs")
        for workers in args.workers:
            rate = images_per_second(paths, config.classes, workers, args.batches)
            print(f"workers={workers}: {rate:.0f} images/s ({rate / BATCH:.1f} batches/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
