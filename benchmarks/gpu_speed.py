"""GPU speed: yolov4 forward and training images/second on CUDA device 0 (a CUDA build).

Forward: inference passes of `batch` images (batch 1 and 64 by default). Training: one darknet
iteration of `batch` images (train_step per mini-batch, then the SGD update); the mini-batch is
min(batch, --mini-batch) as darknet's subdivisions would make it, because yolov4-416's training
buffers for 64 images (~80 GB) exceed one GPU. Random weights: speed does not depend on them.

    python benchmarks/gpu_speed.py [--size 416] [--batches 1,64] [--train-batches 1,64] [--mini-batch 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder
from darknet_py.network import gpu_available, gpu_status


def timed(run, repeats: int) -> float:
    run()  # warm-up: device buffers, cuBLAS heuristics
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def forward_speed(cfg: Path, batch: int, size: int, repeats: int) -> float:
    blob = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    with dn.Network(cfg, batch=batch, gpu=0) as net:
        return batch / timed(lambda: net.forward(blob), repeats)


def train_speed(cfg: Path, batch: int, mini_batch: int, size: int, repeats: int) -> tuple[float, int]:
    rng = np.random.default_rng(1)
    while True:
        mini = min(batch, mini_batch)
        steps = -(-batch // mini)
        images = rng.random((mini, 3, size, size), dtype=np.float32)
        truths = np.zeros((mini, 16, 5), np.float32)
        truths[:, :4] = (0.5, 0.5, 0.2, 0.3, 0)
        try:
            with dn.Network(cfg, batch=mini, gpu=0) as net:
                def iteration():
                    for _ in range(steps):
                        net.train_step(images, truths, iteration=1000)
                    net.update(0.001, 0.949, 0.0005, mini * steps)
                return mini * steps / timed(iteration, repeats), mini
        except MemoryError:
            if mini_batch == 1:
                raise
            mini_batch = max(1, mini_batch // 2)  # too big for this GPU: smaller subdivisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="yolov4")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batches", default="1,64", help="forward batches")
    parser.add_argument("--train-batches", default=None, help="training batches (default: --batches)")
    parser.add_argument("--mini-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not gpu_available():
        raise SystemExit(f"gpu_speed: no usable CUDA device: {gpu_status()}")
    print(f"gpu_speed: {gpu_status()}", flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    train_batches = [int(b) for b in (args.train_batches or args.batches).split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / f"{args.arch}.cfg"
        cfg_builder.write_cfg(cfg, args.arch, classes=80, width=args.size, height=args.size)
        for batch in batches:
            print(f"{args.arch}-{args.size} forward  batch {batch:3d}: "
                  f"{forward_speed(cfg, batch, args.size, args.repeats):8.1f} images/s", flush=True)
        for batch in train_batches:
            speed, mini = train_speed(cfg, batch, args.mini_batch, args.size, max(1, args.repeats - 1))
            print(f"{args.arch}-{args.size} training batch {batch:3d} (mini-batch {mini}): {speed:8.1f} images/s",
                  flush=True)


if __name__ == "__main__":
    main()
