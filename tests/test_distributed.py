"""Distributed training on MPI (train(distributed=True)): `mpirun -np 2` against one process.

The MPI runs start tests/mpi_train_worker.py under mpirun (Open MPI or MPICH from the system,
mpi4py in this environment; .ci/run installs both) and skip, saying why, where either is
missing. Every run is 10 iterations of a 4-conv-layer cfg at 64x64 on 8 synthesized images,
global batch 8, seed 3.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import darknet_py as dn
from darknet_py.data import Augmentation, BatchLoader
from darknet_py.distributed import Shard
from darknet_py.errors import MissingDependencyError, ShapeError

WORKER = Path(__file__).with_name("mpi_train_worker.py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
SEED, BATCH, ITERATIONS = 3, 8, 10
RUN_TIMEOUT = 180  # seconds for one mpirun (a hung job fails the test instead of the suite)
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",  # CI runs as root
    "OMPI_MCA_rmaps_base_oversubscribe": "1",  # 2 ranks (3 in one test) on a 2-core machine
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",  # containers forbid the cross-memory attach
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "DARKNET_PY_THREADS": "1",
}


@functools.lru_cache(maxsize=None)
def mpi_missing() -> str:
    """Why the MPI tests cannot run here ('' when they can)."""
    if MPIRUN is None:
        return "no mpirun/mpiexec (apt-get install openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install "darknet_py[mpi]")'
    probe = subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], capture_output=True, text=True,
                           env={**os.environ, **MPI_ENV}, timeout=60)
    if probe.returncode:
        return f"mpi4py cannot load an MPI library: {probe.stderr.strip()[-300:]}"
    return ""


@pytest.fixture
def mpi():
    """Skip, saying why, where the MPI runs cannot start."""
    reason = mpi_missing()
    if reason:
        pytest.skip(reason)


needs_mpi = pytest.mark.usefixtures("mpi")


# --------------------------------------------------------------------------- setup


def write_cfg(path: Path, *, batch_normalize: bool, subdivisions: int, batch: int = BATCH, random: int = 0,
              max_batches: int = ITERATIONS, learning_rate: float = 0.002) -> Path:
    bn = "batch_normalize=1\n" if batch_normalize else ""
    conv = "[convolutional]\n" + bn + "filters={f}\nsize=3\nstride={s}\npad=1\nactivation=leaky\n\n"
    path.write_text(
        f"[net]\nbatch={batch}\nsubdivisions={subdivisions}\nwidth=64\nheight=64\nchannels=3\nmomentum=0.9\n"
        f"decay=0.0005\nlearning_rate={learning_rate}\nburn_in=2\nmax_batches={max_batches}\npolicy=steps\nsteps=8\n"
        "scales=.1\nhue=.1\nsaturation=1.5\nexposure=1.5\n\n"
        + conv.format(f=8, s=1) + "[maxpool]\nsize=2\nstride=2\n\n" + conv.format(f=16, s=1)
        + "[maxpool]\nsize=2\nstride=2\n\n" + conv.format(f=32, s=2)
        + "[convolutional]\nfilters=21\nsize=1\nstride=1\nactivation=linear\n\n"
        "[yolo]\nmask=0,1,2\nanchors=8,8,16,24,40,12\nclasses=2\nnum=3\njitter=.2\nignore_thresh=.7\n"
        f"random={random}\n")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    dn.crowdhuman.synthesize(root / "src", train=8, val=4, seed=0, width_range=(64, 128))
    dn.crowdhuman.prepare(root / "src", root / "ds", 64, 64, min_size=2)
    cfgs = {(bn, s): write_cfg(root / f"{'bn' if bn else 'plain'}-s{s}.cfg", batch_normalize=bn, subdivisions=s)
            for bn in (False, True) for s in (1, 2, 4)}
    return SimpleNamespace(root=root, data=root / "ds" / "crowdhuman.data", cfgs=cfgs)


def run_job(directory: Path, ranks: int, **job) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the worker (under `mpirun -np ranks`, or alone for ranks=0); returns the process and
    each rank's npz (rank -> dict of arrays)."""
    directory.mkdir(parents=True, exist_ok=True)
    job = {"out": str(directory), "backup_dir": str(directory / "backup"), "seed": SEED,
           "distributed": ranks > 0, **{k: str(v) if isinstance(v, Path) else v for k, v in job.items()}}
    (directory / "job.json").write_text(json.dumps(job))
    command = [sys.executable, str(WORKER), str(directory / "job.json")]
    if ranks:
        command = [MPIRUN, "-np", str(ranks)] + command
    process = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **MPI_ENV},
                             timeout=RUN_TIMEOUT)
    results = {}
    for rank in range(max(ranks, 1)):
        path = directory / f"rank{rank}.npz"
        if path.is_file():
            with np.load(path) as npz:
                results[rank] = {key: npz[key] for key in npz.files}
    return process, results


def ran(process: subprocess.CompletedProcess) -> None:
    assert process.returncode == 0, f"exit {process.returncode}\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"


def layers(result: dict, kinds=("weights", "biases", "scales", "rolling_mean", "rolling_variance")) -> list[str]:
    return sorted(k for k in result if k.startswith("p") and k.split("_", 1)[1] in kinds)


def relative_differences(a: dict, b: dict, keys: list[str]) -> dict[str, float]:
    """Per layer and kind: ||a - b|| / ||a||."""
    return {k: float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(a[k])) for k in keys}


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Runs shared by the tests, made on first use: runs(key, ranks, batch_normalize, subdivisions)."""
    made: dict = {}
    base = tmp_path_factory.mktemp("runs")

    def get(ranks: int, batch_normalize: bool, subdivisions: int, **job) -> dict:
        key = (ranks, batch_normalize, subdivisions, tuple(sorted(job.items())))
        if key not in made:
            name = f"n{ranks}-{'bn' if batch_normalize else 'plain'}-s{subdivisions}-{len(made)}"
            process, results = run_job(base / name, ranks, data=dataset.data,
                                       cfg=dataset.cfgs[batch_normalize, subdivisions], **job)
            ran(process)
            made[key] = SimpleNamespace(results=results, directory=base / name, process=process)
        return made[key]

    return get


# --------------------------------------------------------------------------- the share of a batch


@pytest.mark.parametrize("batch, subdivisions, size", [(8, 1, 2), (8, 2, 2), (8, 4, 2), (8, 8, 2), (8, 2, 4),
                                                       (12, 2, 4), (12, 3, 2), (18, 3, 2), (64, 16, 4), (64, 1, 8),
                                                       (6, 3, 3), (5, 1, 1), (16, 4, 16)])
def test_ranks_take_the_single_process_slots_in_order(batch, subdivisions, size):
    mini = batch // subdivisions
    single = [(iteration * subdivisions + k, s) for iteration in (0, 3) for k in range(subdivisions)
              for s in range(mini)]
    shards = [Shard.plan(rank, size, batch, subdivisions) for rank in range(size)]
    assert shards[0].steps * shards[0].step_images * size == batch
    assert mini % shards[0].step_images == 0  # no pass straddles two single-process mini-batches
    # rank r: slots r*B/N .. (r+1)*B/N - 1 of each iteration, so ranks in order give the single process's order
    assert [slot for iteration in (0, 3) for shard in shards for slot in shard.slots(iteration)] == single


def test_batch_must_be_divisible_by_the_ranks():
    with pytest.raises(ShapeError, match=r"batch=8 is not divisible by the 3 processes"):
        Shard.plan(0, 3, 8, 2, "x.cfg")
    with pytest.raises(ShapeError, match=r"batch=8 divisible by subdivisions=3"):
        Shard.plan(0, 2, 8, 3, "x.cfg")


def test_loader_slot_plan_draws_the_single_process_slots(dataset):
    """A rank's loader (slot_plan = Shard.source) returns exactly the images and truths of its
    slots of the single-process batches, augmentation included."""
    images = dn.datafile.read_image_list(dataset.root / "ds" / "train.txt")
    augmentation = Augmentation(jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5, flip=True)
    options = dict(classes=2, width=64, height=64, augmentation=augmentation, max_boxes=20, seed=SEED, workers=0)
    with BatchLoader(images, batch=4, **options) as single:  # batch 8, subdivisions 2
        whole = [single.get(k) for k in range(4)]  # iterations 0 and 1
        for size in (2, 4):
            for rank in range(size):
                shard = Shard.plan(rank, size, 8, 2)
                with BatchLoader(images, batch=shard.step_images, slot_plan=shard.source, **options) as mine:
                    for iteration in range(2):
                        got = [mine.get(iteration * shard.steps + t) for t in range(shard.steps)]
                        slots = shard.slots(iteration)
                        expected = np.stack([whole[index].images[s] for index, s in slots])
                        np.testing.assert_array_equal(np.concatenate([b.images for b in got]), expected)
                        expected = np.stack([whole[index].truths[s] for index, s in slots])
                        np.testing.assert_array_equal(np.concatenate([b.truths for b in got]), expected)


def test_without_mpi4py_distributed_raises_with_the_install_command(dataset, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `from mpi4py import MPI` then raises ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "darknet_py\[mpi\]"'):
        dn.train(dataset.data, dataset.cfgs[False, 1], backup_dir=tmp_path, distributed=True, progress=False)


# --------------------------------------------------------------------------- equal to one process


@needs_mpi
@pytest.mark.parametrize("subdivisions", [1, 4])
def test_two_ranks_give_the_single_process_weights_without_batch_norm(runs, dataset, subdivisions):
    """subdivisions=1: each rank takes half of the one mini-batch (4 images); subdivisions=4:
    each rank runs 2 of the 4 mini-batches of 2. Float sums run in another order, so equal to
    ~1e-7; the bar is 1e-5 per layer. The ranks apply the same all-reduced update: bit-identical."""
    single = runs(0, False, subdivisions, compute_map=True).results[0]
    two = runs(2, False, subdivisions, compute_map=True)
    rank0, rank1 = two.results[0], two.results[1]
    keys = layers(single)
    assert len(keys) == 8  # 4 conv layers: weights and biases
    assert all(rank0[k].tobytes() == rank1[k].tobytes() for k in keys)
    differences = relative_differences(single, rank0, keys)
    print(f"subdivisions={subdivisions}: per-layer ||w2 - w1|| / ||w1||:",
          {k: f"{v:.1e}" for k, v in differences.items()}, f"mAP {rank0['maps']} vs {single['maps']}")
    assert max(differences.values()) < 1e-5, differences
    with dn.Network(dataset.cfgs[False, subdivisions], seed=SEED) as start:  # train()'s random init
        moved = min(np.linalg.norm(single[k] - start.get_parameter(int(k[1:].split("_")[0]), k.split("_", 1)[1]))
                    / np.linalg.norm(single[k]) for k in keys)
    assert moved > 1e-3  # the 10 updates moved every layer far more than the ranks differ
    np.testing.assert_allclose(rank0["losses"], single["losses"], rtol=1e-5)
    assert len(single["losses"]) == ITERATIONS and len(set(single["losses"].tolist())) == ITERATIONS
    np.testing.assert_allclose(rank0["maps"], single["maps"], atol=1e-6)  # mAP split over the ranks
    backup = two.directory / "backup"
    assert (backup / f"plain-s{subdivisions}_final.weights").is_file()
    with dn.Network(dataset.cfgs[False, subdivisions], backup / f"plain-s{subdivisions}_final.weights") as net:
        assert net.seen == ITERATIONS * BATCH
        np.testing.assert_array_equal(net.get_parameter(0, "weights"), rank0["p0_weights"])


@needs_mpi
def test_batch_norm_is_exact_when_the_ranks_divide_subdivisions(runs):
    """subdivisions=2 on 2 ranks: each rank's pass is one whole single-process mini-batch, so
    the batch statistics are the same, and the rolling statistics are replayed in the
    single-process order: weights, scales and rolling statistics equal to float rounding."""
    single, two = runs(0, True, 2).results[0], runs(2, True, 2).results
    keys = layers(single)
    assert len(keys) == 3 * 5 + 2
    assert all(two[0][k].tobytes() == two[1][k].tobytes() for k in keys)
    differences = relative_differences(single, two[0], keys)
    print(f"batch norm, subdivisions=2: worst per-layer difference {max(differences.values()):.1e}")
    assert max(differences.values()) < 1e-5, differences
    np.testing.assert_allclose(two[0]["losses"], single["losses"], rtol=1e-5)


@needs_mpi
def test_batch_norm_per_rank_keeps_the_ranks_identical_and_tracks_the_loss(runs):
    """subdivisions=1 on 2 ranks: batch norm normalises over each rank's 4 images instead of
    the mini-batch's 8 (per-rank statistics, as darknet's -gpus and DDP without SyncBN), so the
    run is not the single-process one. Its loss must stay close. Bars and why: iteration 1 has
    the same weights and images, so its gap is the batch-statistics effect alone (0.2-2.1 % over
    seeds 1-6); the gaps then compound through the updates, to at most 3-10 % at one iteration
    and 0.9-2.5 % of the summed loss over the 10 iterations (seeds 1-6; seed 3: 1.2 %, 10.1 %,
    2.3 %). The bars are 5 %, 25 % and 6 %, about 2.5 x the worst seen, while another seed's
    single-process run is 10-30 % away in summed loss: the distributed run tracks the single one
    much more closely than data noise."""
    single, two = runs(0, True, 1).results[0], runs(2, True, 1).results
    keys = layers(single)
    assert all(two[0][k].tobytes() == two[1][k].tobytes() for k in keys)
    a, b = single["losses"], two[0]["losses"]
    gaps = np.abs(a - b) / a
    print(f"batch norm per rank: loss gaps {np.round(gaps, 4)}, summed {np.abs(a - b).sum() / a.sum():.4f}")
    assert gaps[0] < 0.05, gaps
    assert gaps.max() < 0.25, gaps
    assert np.abs(a - b).sum() / a.sum() < 0.06, (a, b)


@needs_mpi
def test_rank_0_callback_returning_false_stops_every_rank(dataset, tmp_path):
    process, results = run_job(tmp_path, 2, data=dataset.data, cfg=dataset.cfgs[False, 1], stop_at=4)
    ran(process)
    assert [int(results[r]["end"]) for r in (0, 1)] == [4, 4]
    assert len(results[1]["losses"]) == 4 and results[1]["losses"].tolist() == results[0]["losses"].tolist()
    assert (tmp_path / "backup" / "plain-s1_last.state.npz").is_file()  # written by rank 0, with the momentum
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["chart.png", "plain-s1_last.state.npz",
                                                                     "plain-s1_last.weights"]


@needs_mpi
def test_rank_0_callback_raising_stops_every_rank_with_an_error(dataset, tmp_path):
    """The callback's exception on rank 0, a DistributedError naming it on rank 1, `_last` for
    the 3 iterations done; no abort (both ranks raise at the same point)."""
    process, _ = run_job(tmp_path, 2, data=dataset.data, cfg=dataset.cfgs[False, 1], raise_at=3)
    assert process.returncode != 0
    assert "RuntimeError: callback failed at 3" in process.stderr
    assert "DistributedError: rank 0 failed after iteration 3: RuntimeError: callback failed at 3" in process.stderr
    assert "aborting the job" not in process.stderr and "MPI_ABORT" not in process.stderr
    with dn.Network(dataset.cfgs[False, 1], tmp_path / "backup" / "plain-s1_last.weights") as net:
        assert net.seen == 3 * BATCH


@needs_mpi
def test_random_resizing_gives_every_rank_the_single_process_sizes(dataset, tmp_path):
    """random=1: a new input size every 10 iterations (the cfg's size in the last 100, so a long
    max_batches and a callback stop at 25): the same sizes on every rank and in one process, so
    the same weights."""
    cfg = write_cfg(tmp_path / "random.cfg", batch_normalize=False, subdivisions=1, random=1, max_batches=1000,
                    learning_rate=0.0005)  # 0.002 diverges at the larger sizes
    single_process, single = run_job(tmp_path / "single", 0, data=dataset.data, cfg=cfg, stop_at=25)
    two_process, two = run_job(tmp_path / "two", 2, data=dataset.data, cfg=cfg, stop_at=25)
    ran(single_process)
    ran(two_process)
    sizes = [line.split()[3] for line in (tmp_path / "two" / "progress0.txt").read_text().splitlines()]
    assert sizes == [line.split()[3] for line in (tmp_path / "single" / "progress0.txt").read_text().splitlines()]
    assert len(sizes) == 25 and len(set(sizes)) > 1, sizes
    keys = layers(single[0])
    assert all(two[0][k].tobytes() == two[1][k].tobytes() for k in keys)
    assert max(relative_differences(single[0], two[0], keys).values()) < 1e-5


@needs_mpi
def test_a_diverging_loss_stops_every_rank_at_the_single_process_iteration(dataset, tmp_path):
    """learning_rate=50: the loss becomes infinite within a few iterations, in one process and
    on 2 ranks at the same iteration; NonFiniteLossError everywhere and no checkpoint written."""
    cfg = write_cfg(tmp_path / "diverging.cfg", batch_normalize=False, subdivisions=1, learning_rate=50)
    single, _ = run_job(tmp_path / "single", 0, data=dataset.data, cfg=cfg)
    two, _ = run_job(tmp_path / "two", 2, data=dataset.data, cfg=cfg)
    failed = [line for line in single.stderr.splitlines() if line.startswith("darknet_py.train.NonFiniteLossError")]
    assert single.returncode != 0 and failed, single.stderr[-2000:]
    iteration = failed[-1].split("iteration ")[1].split(":")[0]
    assert two.returncode != 0
    assert two.stderr.count("NonFiniteLossError: ") >= 2, two.stderr[-3000:]  # raised on both ranks ...
    assert f"iteration {iteration}: the training loss is not finite" in two.stderr  # ... at the same iteration
    assert "aborting the job" not in two.stderr
    assert list((tmp_path / "two" / "backup").iterdir()) == []


# --------------------------------------------------------------------------- failures


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _iterations_done(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _start(directory: Path, ranks: int, **job) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    job = {"out": str(directory), "backup_dir": str(directory / "backup"), "seed": SEED,
           **{k: str(v) if isinstance(v, Path) else v for k, v in job.items()}}
    (directory / "job.json").write_text(json.dumps(job))
    return subprocess.Popen([MPIRUN, "-np", str(ranks), sys.executable, str(WORKER), str(directory / "job.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **MPI_ENV})


def _stop_launcher(process: subprocess.Popen) -> None:
    """End an mpirun we started that is still running: SIGTERM first (it then ends its ranks)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _end(process: subprocess.Popen, directory: Path, ranks: int) -> tuple[str, str]:
    """Wait for the job; end what is left of it (our processes, by pid) if it hangs."""
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        _stop_launcher(process)
        for rank in range(ranks):  # a rank left behind (stopped, orphaned): ours only if it still runs the worker
            pid_file = directory / f"rank{rank}.pid"
            if pid_file.is_file():
                pid = int(pid_file.read_text())
                try:
                    if WORKER.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
                except (FileNotFoundError, ProcessLookupError):
                    pass
    return out, err


@needs_mpi
def test_killing_a_rank_ends_the_job_and_resuming_continues_the_count(dataset, runs, tmp_path):
    """Rank 1 killed (SIGKILL) in iteration 6 or so: the job ends within seconds with an error
    naming the dead rank, and `_last` (written every 2 iterations here) resumes on 2 ranks at
    its iteration, giving the uninterrupted run's final weights bit for bit."""
    cfg = dataset.cfgs[False, 1]
    job = dict(data=dataset.data, cfg=cfg, last_every=2, sleep=0.4, timeout=60)
    process = _start(tmp_path / "killed", 2, **job)
    try:
        _wait_for(lambda: _iterations_done(tmp_path / "killed" / "progress0.txt") >= 5, 120, "5 iterations")
        killed_at = time.monotonic()
        os.kill(int((tmp_path / "killed" / "rank1.pid").read_text()), signal.SIGKILL)
        process.wait(timeout=30)
        seconds = time.monotonic() - killed_at
    finally:
        out, err = _end(process, tmp_path / "killed", 2)
    print(f"killed rank 1: the job ended {seconds:.2f} s later, exit {process.returncode}")
    assert process.returncode != 0
    assert seconds < 10, seconds
    assert "rank 1" in err or "signal 9" in err or "Killed" in err, err
    last = tmp_path / "killed" / "backup" / "plain-s1_last.weights"
    with dn.Network(cfg, last) as net:
        done = net.seen // BATCH
    assert 4 <= done < ITERATIONS and done % 2 == 0
    resumed_process, resumed = run_job(tmp_path / "resumed", 2, data=dataset.data, cfg=cfg, weights=last,
                                       backup_dir=tmp_path / "killed" / "backup")
    ran(resumed_process)
    print(f"resumed at iteration {int(resumed[0]['start'])} (the _last checkpoint's), ran to {int(resumed[0]['end'])}")
    assert int(resumed[0]["start"]) == done and int(resumed[0]["end"]) == ITERATIONS
    whole = runs(2, False, 1, compute_map=True)
    final = tmp_path / "killed" / "backup" / "plain-s1_final.weights"
    assert final.read_bytes() == (whole.directory / "backup" / "plain-s1_final.weights").read_bytes()
    np.testing.assert_array_equal(resumed[0]["losses"], whole.results[0]["losses"][done:])


@needs_mpi
def test_a_rank_that_stops_answering_aborts_the_job_after_the_timeout(dataset, tmp_path):
    """Rank 1 stopped (SIGSTOP: alive to the launcher, silent to the others): rank 0's watchdog
    aborts the job after distributed_timeout (5 s here), saying why."""
    directory = tmp_path / "stopped"
    process = _start(directory, 2, data=dataset.data, cfg=dataset.cfgs[False, 1], sleep=0.2, timeout=5)
    try:
        _wait_for(lambda: _iterations_done(directory / "progress0.txt") >= 2, 120, "2 iterations")
        stopped_at = time.monotonic()
        os.kill(int((directory / "rank1.pid").read_text()), signal.SIGSTOP)
        process.wait(timeout=60)
        seconds = time.monotonic() - stopped_at
    finally:
        out, err = _end(process, directory, 2)
    print(f"stopped rank 1: the job aborted {seconds:.2f} s later, exit {process.returncode}")
    assert process.returncode != 0
    assert 5 <= seconds < 25, seconds
    assert "rank 0 of 2" in err and "no answer from the other ranks for 5 s" in err and "aborting the job" in err, err


@needs_mpi
def test_batch_not_divisible_by_the_ranks_fails_clearly(dataset, tmp_path):
    process, _ = run_job(tmp_path, 3, data=dataset.data, cfg=dataset.cfgs[False, 1])
    assert process.returncode != 0
    assert "batch=8 is not divisible by the 3 processes" in process.stderr, process.stderr[-3000:]


@needs_mpi
def test_cli_stops_every_rank_on_sigusr1_and_resumes(dataset, tmp_path):
    """`mpirun -np 2 darknet-py detector train ... -distributed`: SIGUSR1 to mpirun (forwarded to
    every rank) stops after the current iteration like a first Ctrl-C, with the exact resume
    state; the same command line with the `_last` weights continues the count."""
    cfg, backup = dataset.cfgs[False, 2], tmp_path / "backup"
    command = [MPIRUN, "-np", "2", sys.executable, "-m", "darknet_py.cli", "detector", "train", str(dataset.data),
               str(cfg), "-distributed", "--seed", str(SEED), "--backup", str(backup), "--max-batches", "100000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **MPI_ENV})
    try:
        lines = []
        for line in process.stderr:  # rank 0's progress lines, one per iteration (not a terminal)
            lines.append(line)
            if line.lstrip().startswith("3:"):
                process.send_signal(signal.SIGUSR1)
                break
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        _stop_launcher(process)
    err = "".join(lines) + err
    assert process.returncode != 0 and "interrupted" in err, err[-3000:]
    last = backup / "plain-s2_last.weights"
    assert (backup / "plain-s2_last.state.npz").is_file()  # the exact resume state: stopped between iterations
    with dn.Network(cfg, last) as net:
        done = net.seen // BATCH
    assert done >= 3
    resumed_command = command[:10] + [str(last)] + command[10:-1] + [str(done + 2)]  # WEIGHTS after CFG
    resumed = subprocess.run(resumed_command, capture_output=True, text=True,
                             env={**os.environ, **MPI_ENV}, timeout=RUN_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"2 iterations (to {done + 2})" in resumed.stdout and resumed.stdout.count("iterations (to") == 1
