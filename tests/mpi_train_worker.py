"""One rank of the distributed-training tests (tests/test_distributed.py), started by mpirun:

    mpirun -np N python tests/mpi_train_worker.py JOB.json

JOB.json holds train()'s arguments (data, cfg, weights, backup_dir, max_batches, seed, ...) and
test settings: `out` (a folder: rank<r>.npz gets this rank's final parameters and history),
`last_every` (iterations between `_last` checkpoints, darknet's 100 by default), `stop_at`
(rank 0's callback returns False after that iteration), `raise_at` (it raises RuntimeError
there), `sleep` (seconds rank 0's callback sleeps, to make a run last), `distributed` (False: a plain
single-process train() for the reference run). A non-distributed job ignores the MPI launcher.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    import importlib

    train_module = importlib.import_module("darknet_py.train")  # the module: `darknet_py.train` is the function
    train = train_module.train

    if "last_every" in job:
        train_module.LAST_EVERY = int(job["last_every"])
    out = Path(job["out"])
    distributed = job.get("distributed", True)
    rank = 0
    captured: dict = {}

    if distributed:
        from darknet_py.distributed import DistributedTrainer

        base_run = DistributedTrainer.run

        def run(self):  # noqa: ANN001 - keep this rank's final parameters for the comparison
            try:
                return base_run(self)
            finally:
                captured.update(parameters(self.net))
                captured["reduce_seconds"] = self.reduce_seconds

        DistributedTrainer.run = run
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    else:
        base_run = train_module._Trainer.run

        def run(self):  # noqa: ANN001
            try:
                return base_run(self)
            finally:
                captured.update(parameters(self.net))

        train_module._Trainer.run = run

    (out / f"rank{rank}.pid").write_text(str(os.getpid()))
    stop_at = job.get("stop_at")
    progress_file = out / f"progress{rank}.txt"

    sleep = float(job.get("sleep", 0))

    def callback(p):  # noqa: ANN001 - a TrainProgress (rank 0 only)
        with open(progress_file, "a") as f:
            f.write(f"{p.iteration} {p.loss!r} {p.seconds!r} {p.width}x{p.height}\n")
        time.sleep(sleep)  # slows every rank: they wait for rank 0 at the end of the iteration
        if p.iteration == job.get("raise_at"):
            raise RuntimeError(f"callback failed at {p.iteration}")
        return stop_at is None or p.iteration < stop_at

    options = {key: job[key] for key in ("weights", "max_batches", "seed", "clear", "compute_map")
               if key in job}
    result = train(job["data"], job["cfg"], options.pop("weights", None), backup_dir=job["backup_dir"],
                   progress=False, workers=job.get("workers", 1), callback=callback, distributed=distributed,
                   distributed_timeout=job.get("timeout", 60.0), **options)
    np.savez(out / f"rank{rank}.npz", losses=np.array(result.history.losses, np.float64),
             iterations=np.array(result.history.iterations), start=result.start_iteration, end=result.iteration,
             seed=result.seed, maps=np.array([m for _, m in result.history.maps], np.float64),
             **{k: v for k, v in captured.items()})
    return 0


def parameters(net) -> dict:  # noqa: ANN001 - a Network
    arrays = {}
    for layer in net.layers:
        if layer.type != "convolutional":
            continue
        kinds = ["weights", "biases"]
        if layer.batch_normalize:
            kinds += ["scales", "rolling_mean", "rolling_variance"]
        for kind in kinds:
            arrays[f"p{layer.index}_{kind}"] = net.get_parameter(layer.index, kind)
    return arrays


if __name__ == "__main__":
    sys.exit(main())
