"""Distributed training speed: train(distributed=True) of yolov4-tiny under `mpirun -np 1` and
`mpirun -np 2` (each rank one engine and BLAS thread by default, and Open MPI binds each rank
to a core of its own, so 2 ranks use 2 cores), on synthesized data at the same global batch.

Prints, per number of processes, images per second of the training iteration (median over the
timed iterations, after warm-up ones), the time of the gradient all-reduce (packing the update
buffers into one float32 buffer, MPI_Allreduce, unpacking, the batch-norm rolling statistics;
waiting for a slower rank included) and its share of the iteration time, averaged over ranks.

    python benchmarks/train.py --distributed [--processes 1,2] [--batch 16] [--size 416]
                                             [--iterations 3] [--warmup 1] [--threads 1]
    (or python benchmarks/train_distributed.py ...)

Needs mpirun (Open MPI or MPICH) and mpi4py (pip install "darknet_py[mpi]"). As root, Open MPI
wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; this script sets them.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

RESULT = "DISTRIBUTED-BENCHMARK "


def prepare(directory: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Synthesized CrowdHuman-like images prepared for darknet, and a yolov4-tiny cfg."""
    import darknet_py as dn

    dn.crowdhuman.synthesize(directory / "src", train=max(2 * args.batch, 16), val=2, seed=0,
                             width_range=(args.size // 2, 2 * args.size))
    dn.crowdhuman.prepare(directory / "src", directory / "ds", args.size, args.size, min_size=2)
    cfg = directory / "yolov4-tiny.cfg"
    dn.cfg.write_cfg(cfg, "yolov4-tiny", classes=2, width=args.size, height=args.size, batch=args.batch,
                     subdivisions=1, max_batches=args.warmup + args.iterations, burn_in=1, mosaic=False)
    return directory / "ds" / "crowdhuman.data", cfg


def worker(args: argparse.Namespace) -> None:
    """One rank: train the prepared cfg, print (seconds, all-reduce seconds) per iteration."""
    import darknet_py as dn
    from darknet_py.distributed import DistributedTrainer

    records: list[tuple[float, float]] = []
    base = DistributedTrainer.iteration

    def iteration(self, index):  # noqa: ANN001, ANN202 - times each iteration and its all-reduce
        reduced, began = self.reduce_seconds, time.perf_counter()
        progress = base(self, index)
        records.append((time.perf_counter() - began, self.reduce_seconds - reduced))
        return progress

    DistributedTrainer.iteration = iteration
    directory = Path(args.worker)
    result = dn.train(directory / "ds" / "crowdhuman.data", directory / "yolov4-tiny.cfg",
                      backup_dir=directory / f"backup-{os.environ.get('DARKNET_PY_BENCH_N', 'x')}", seed=1,
                      progress=False, workers=1, distributed=True, distributed_timeout=3600)
    print(RESULT + json.dumps({"rank": result.rank, "records": records[args.warmup:]}), flush=True)


def launch(processes: int, directory: Path, args: argparse.Namespace, mpirun: str) -> dict:
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
           "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "DARKNET_PY_THREADS": str(args.threads),
           "DARKNET_PY_BENCH_N": str(processes)}
    command = [mpirun, "-np", str(processes), sys.executable, os.path.abspath(__file__), "--worker", str(directory),
               "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"mpirun -np {processes} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}")
    ranks = [json.loads(line[len(RESULT):]) for line in done.stdout.splitlines() if line.startswith(RESULT)]
    steps = [seconds for rank in ranks for seconds, _ in rank["records"]]
    reduces = [reduce for rank in ranks for _, reduce in rank["records"]]
    step = statistics.median(steps)
    return {"processes": processes, "step": step, "images_per_second": args.batch / step,
            "reduce": statistics.median(reduces), "share": sum(reduces) / sum(steps)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated numbers of MPI processes (default 1,2)")
    parser.add_argument("--batch", type=int, default=16, help="global batch (the cfg's batch, subdivisions 1)")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=1, help="engine and BLAS threads per process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        raise SystemExit("no mpirun or mpiexec: install Open MPI or MPICH (apt-get install openmpi-bin libopenmpi-dev)")
    counts = [int(n) for n in args.processes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data, cfg = prepare(Path(tmp), args)
        rows = [launch(n, Path(tmp), args, mpirun) for n in counts]
    print(f"machine: {os.cpu_count()} cores; yolov4-tiny-{args.size}, global batch {args.batch}, "
          f"{args.iterations} timed iterations after {args.warmup}, {args.threads} thread(s) per process")
    print(f"{'processes':>9} {'images/s':>9} {'iteration s':>11} {'all-reduce s':>12} {'all-reduce share':>16}")
    for row in rows:
        print(f"{row['processes']:>9} {row['images_per_second']:>9.2f} {row['step']:>11.3f} {row['reduce']:>12.4f} "
              f"{100 * row['share']:>15.1f}%")
    if len(rows) > 1:
        print(f"speed-up {rows[-1]['processes']} vs {rows[0]['processes']} processes: "
              f"{rows[-1]['images_per_second'] / rows[0]['images_per_second']:.2f}x")


if __name__ == "__main__":
    main()
