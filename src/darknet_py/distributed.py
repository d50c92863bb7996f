"""Data-parallel training on MPI (mpi4py): `train(..., distributed=True)` in each of N processes
started by `mpirun -np N` (or `mpiexec`, or Slurm's `srun`), giving the weights one process
with the whole batch would give.

How a batch is shared. The cfg's `batch` B stays the global batch of an iteration and must be
divisible by N. One process draws B images per iteration as `subdivisions` mini-batches of
m = B / subdivisions, slot s of mini-batch k drawn from (seed, iteration * subdivisions + k, s)
(see data.BatchLoader): the B images are the slots j = k * m + s, j = 0 .. B-1. Rank r takes
the slots r * B/N ... (r+1) * B/N - 1, in `steps` forward/backward passes of
step_images = gcd(m, B/N) images each (so that no pass straddles two single-process
mini-batches): with subdivisions = 1 each rank runs one pass of m/N images; when N divides
subdivisions each rank runs subdivisions/N whole single-process mini-batches. The union over
ranks is exactly the single-process batch, images and augmentation alike, whatever N is.

Gradients. The engine's update buffers (weights, biases, batch-norm scales) hold darknet's
-dL/dparam accumulated over the batch on top of the momentum (momentum times the previous
update), and every rank holds the same momentum after an update. Before an iteration the ranks
other than 0 zero their buffers; after the passes one MPI_Allreduce (sum) of a contiguous
float32 buffer gives every rank momentum + the gradient of the whole batch, which is what one
process holds after its subdivisions; every rank then applies darknet's SGD step with
batch = B, identically. Without batch norm the result equals the single process to float
rounding (the sums run in another order).

Batch norm. The statistics of the forward pass are those of each pass's own images (per rank,
as in darknet's multi-GPU training and PyTorch's DDP without SyncBN). The rolling mean and
variance ride in the same buffer: each pass starts from zero rolling statistics, so that the
engine leaves 0.01 times that pass's statistics, and the ranks add up the single-process
sequence of updates, 0.99^S r0 + sum_k 0.99^(S-1-k) 0.01 s_k over the S = subdivisions
mini-batches, a mini-batch shared by several passes (on one or several ranks) counting their
mean (an average over ranks when subdivisions = 1). When N divides subdivisions every pass is
a whole single-process mini-batch and batch-norm training is exact too; otherwise it is that
of a process whose mini-batch is step_images images.

Everything else is decided by rank 0 and shared: the seed, the start iteration (`seen` of the
weights) and the weights themselves (broadcast, so only rank 0 needs the weights and resume
files), the avg_loss of a resumed run. Rank 0 writes every checkpoint and the chart, prints the
progress and calls the callback; its verdict, a stop request (SIGINT, SIGTERM or SIGUSR1 on any
rank: stop after this iteration) and any rank's failure are agreed at the end of every
iteration, so every rank stops at the same iteration with the same exception type. mAP runs on
every rank over its share of the valid list; rank 0 combines the detections.

No hang. Every collective call is watched: a rank that waits longer than `timeout` seconds for
the others (one died without the launcher noticing, or hangs) prints which rank and what it was
waiting for, and aborts the job (MPI_Abort); so does any exception that not every rank raised
at the same point (those would leave the others waiting). mpirun itself ends the job within a
second or two when a rank is killed.
"""
from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from ._engine import as_float_buffer, check, lib
from .errors import DataError, DistributedError, MissingDependencyError, ShapeError
from .evaluate import _run_network, compute_map, evaluation_images
from .network import DarknetWarning, LayerInfo, Network, TrainStats, gpu_count
from .train import MAP_BATCH, NonFiniteLossError, _Trainer

__all__ = ["DEFAULT_TIMEOUT", "Group", "Shard", "load_mpi"]

INSTALL_HINT = 'pip install "darknet_py[mpi]" (and an MPI library from the system, e.g. ' \
               "apt-get install openmpi-bin libopenmpi-dev)"
DEFAULT_TIMEOUT = 600.0  # seconds a rank waits for the others at one collective call
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")  # each asks every rank to stop after this iteration
ABORT_STATUS = 1
STATS_FIELDS = 9  # TrainStats: 8 floats and the count
ROLLING_MOMENTUM = 0.99  # the engine's batch-norm rolling update: r = 0.99 r + 0.01 s (convolutional_layer.c)

PARAMETER_KINDS = ("weights", "biases", "scales", "rolling_mean", "rolling_variance")
GRADIENT_KINDS = ("weights_grad", "biases_grad", "scales_grad")
ROLLING_KINDS = ("rolling_mean", "rolling_variance")
_CODES = {"weights": "DN_PARAM_WEIGHTS", "biases": "DN_PARAM_BIASES", "scales": "DN_PARAM_SCALES",
          "rolling_mean": "DN_PARAM_ROLLING_MEAN", "rolling_variance": "DN_PARAM_ROLLING_VARIANCE",
          "weights_grad": "DN_PARAM_WEIGHTS_GRAD", "biases_grad": "DN_PARAM_BIASES_GRAD",
          "scales_grad": "DN_PARAM_SCALES_GRAD"}
_BN_ONLY = {"scales", "rolling_mean", "rolling_variance", "scales_grad"}


def load_mpi() -> Any:
    """mpi4py's MPI module (importing it initialises MPI); MissingDependencyError with the
    install command when mpi4py or the MPI library it loads is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MissingDependencyError(f"distributed training needs mpi4py: {INSTALL_HINT}") from exc
    except RuntimeError as exc:  # mpi4py installed, but no MPI library for it to load
        raise MissingDependencyError(f"distributed training needs an MPI library for mpi4py ({exc}): "
                                     f"{INSTALL_HINT}") from exc
    return MPI


# --------------------------------------------------------------------------- the share of a batch


@dataclass(frozen=True)
class Shard:
    """Which slots of every global batch rank `rank` of `size` trains on (see the module doc)."""

    rank: int
    size: int
    batch: int          # the global batch: the cfg's `batch`
    subdivisions: int   # the cfg's

    @classmethod
    def plan(cls, rank: int, size: int, batch: int, subdivisions: int, cfg: object = "the cfg") -> "Shard":
        if batch % subdivisions:
            raise ShapeError(f"{cfg}: distributed training needs batch={batch} divisible by "
                             f"subdivisions={subdivisions}")
        if batch % size:
            raise ShapeError(f"{cfg}: batch={batch} is not divisible by the {size} processes: the global batch is "
                             f"shared equally; use a batch that is a multiple of {size} or another number of "
                             "processes (mpirun -np)")
        return cls(rank, size, batch, subdivisions)

    @property
    def mini_batch(self) -> int:
        """The single-process mini-batch: batch / subdivisions."""
        return self.batch // self.subdivisions

    @property
    def per_rank(self) -> int:
        """Images of each iteration on each rank: batch / size."""
        return self.batch // self.size

    @property
    def step_images(self) -> int:
        """Images of one forward/backward pass on a rank: gcd(mini_batch, per_rank)."""
        return math.gcd(self.mini_batch, self.per_rank)

    @property
    def steps(self) -> int:
        """Forward/backward passes per iteration on a rank."""
        return self.per_rank // self.step_images

    def source(self, request: int) -> tuple[int, int]:
        """BatchLoader's slot_plan: this rank's pass `request` (iteration * steps + pass) is the
        single-process mini-batch index and first slot of its images."""
        iteration, step = divmod(request, self.steps)
        k, first = divmod(self.rank * self.per_rank + step * self.step_images, self.mini_batch)
        return iteration * self.subdivisions + k, first

    def slots(self, iteration: int) -> list[tuple[int, int]]:
        """(single-process mini-batch index, slot) of every image of 0-based `iteration` on this rank."""
        return [(index, first + s) for step in range(self.steps)
                for index, first in [self.source(iteration * self.steps + step)] for s in range(self.step_images)]


# --------------------------------------------------------------------------- flat parameter buffers


class _Layout:
    """Where each convolutional parameter array of `kinds` lies in one flat float32 buffer
    (from `offset` on), read and written by the engine straight into that buffer."""

    def __init__(self, net: Network, kinds: Sequence[str], offset: int = 0):
        self.entries: list[tuple[int, str, int, int, int]] = []  # layer, kind, engine code, offset, count
        self.start = position = offset
        for layer in net.layers:
            if layer.type != "convolutional":
                continue
            for kind in kinds:
                if kind in _BN_ONLY and not layer.batch_normalize:
                    continue
                count = _count(layer, kind)
                self.entries.append((layer.index, kind, int(getattr(lib, _CODES[kind])), position, count))
                position += count
        self.stop = position

    @property
    def size(self) -> int:
        return self.stop - self.start

    def signature(self) -> list[tuple[int, str, int]]:
        return [(index, kind, count) for index, kind, _, _, count in self.entries]

    def read(self, net: Network, flat: np.ndarray) -> None:
        self._copy(net, flat, lib.dn_network_get_param)

    def write(self, net: Network, flat: np.ndarray) -> None:
        self._copy(net, flat, lib.dn_network_set_param)

    def _copy(self, net: Network, flat: np.ndarray, function: Callable) -> None:
        assert flat.dtype == np.float32 and flat.flags.c_contiguous and flat.size >= self.stop
        base = as_float_buffer(flat)
        with net._lock:  # one engine call per array, into (or from) the flat buffer: no copies
            handle = net._live()
            for index, _, code, offset, count in self.entries:
                check(function(handle, index, code, base + offset, count))


def _count(layer: LayerInfo, kind: str) -> int:
    if kind.startswith("weights"):
        return layer.filters * (layer.input_shape[0] // layer.groups) * layer.size * layer.size
    return layer.filters


# --------------------------------------------------------------------------- the process group


class _Watchdog:
    """A thread that aborts the job when the group waits at one collective call longer than its
    timeout (the main thread, blocked inside MPI, cannot raise)."""

    def __init__(self, group: "Group"):
        self.group = group
        self._cond = threading.Condition()
        self._deadline: Optional[float] = None
        self._what = ""
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="darknet_py-mpi-watchdog", daemon=True)
        self._thread.start()

    def arm(self, what: str) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.group.timeout
            self._what = what
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                what = self._what
                break
            else:
                return
        self.group.abort(f"no answer from the other ranks for {self.group.timeout:g} s in {what}: a rank died, "
                         "hangs or is much slower (distributed_timeout)")


class Group:
    """The ranks of MPI_COMM_WORLD training together, with every collective call watched."""

    def __init__(self, timeout: Optional[float] = DEFAULT_TIMEOUT):
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ShapeError(f"distributed_timeout must be a number of seconds > 0 (or None), got {timeout!r}")
        self.MPI = load_mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.host = self.MPI.Get_processor_name()
        self.timeout = None if timeout is None or math.isinf(timeout) else float(timeout)
        self.iteration: Optional[int] = None  # 1-based, for messages
        self.shard: Optional[Shard] = None
        self._watchdog = _Watchdog(self) if self.timeout is not None else None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def name(self) -> str:
        return f"rank {self.rank} of {self.size} ({self.host}, pid {os.getpid()})"

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    def abort(self, reason: str) -> None:
        """Print why on stderr and end every rank of the job (MPI_Abort)."""
        at = f" in iteration {self.iteration}" if self.iteration is not None else ""
        sys.stderr.write(f"darknet-py: error: {self.name}{at}: {reason}; aborting the job\n")
        sys.stderr.flush()
        try:
            self.comm.Abort(ABORT_STATUS)
        finally:
            os._exit(ABORT_STATUS)

    # ---- collective calls ----
    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Run one collective call under the watchdog; an MPI error becomes a DistributedError."""
        if self._watchdog is not None:
            self._watchdog.arm(what)
        try:
            yield
        except self.MPI.Exception as exc:
            raise DistributedError(f"{self.name}: MPI failed in {what}: {exc.Get_error_string()} "
                                   "(another rank may have died)") from exc
        finally:
            if self._watchdog is not None:
                self._watchdog.disarm()

    def bcast(self, value: Any, what: str) -> Any:
        """Rank 0's `value` on every rank."""
        with self.waiting(what):
            return self.comm.bcast(value, root=0)

    def allgather(self, value: Any, what: str) -> list:
        with self.waiting(what):
            return self.comm.allgather(value)

    def gather(self, value: Any, what: str) -> Optional[list]:
        with self.waiting(what):
            return self.comm.gather(value, root=0)

    def allreduce_sum(self, buffer: np.ndarray, what: str) -> None:
        """Sum `buffer` over the ranks, in place."""
        with self.waiting(what):
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def check_same(self, value: Any, what: str,
                   hint: str = "every rank must train the same cfg on the same image list") -> None:
        """DistributedError on every rank when some rank's `value` (an array or anything with a
        stable repr) differs from rank 0's."""
        data = value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode("utf-8", "replace")
        digests = self.allgather(hashlib.sha256(data).hexdigest(), f"the comparison of {what}")
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise agreed(DistributedError(f"the {what} of rank(s) {differing} differ(s) from rank 0's: {hint}"))

    # ---- setup ----
    def plan(self, batch: int, subdivisions: int, cfg: object) -> Shard:
        self.shard = Shard.plan(self.rank, self.size, batch, subdivisions, cfg)
        return self.shard

    def device(self, gpus: Union[None, str, Sequence[int]]) -> Union[None, int]:
        """train()'s `gpus` for this rank: one device per rank, gpus[local rank] (the ranks of one
        machine take the listed devices in order), "auto": the local rank's device if present."""
        if gpus is None:
            return None
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            local_rank = local.Get_rank()
        finally:
            local.Free()
        if isinstance(gpus, str):
            if gpus != "auto":
                raise ShapeError(f"gpus must be None, 'auto' or a list of device indexes, got {gpus!r}")
            if gpu_count() > local_rank:
                return local_rank
            warnings.warn(f"{self.name}: gpus='auto': no CUDA device for local rank {local_rank}; "
                          "training on the CPU", DarknetWarning, stacklevel=3)
            return None
        devices = [int(g) for g in gpus]
        if local_rank >= len(devices):
            raise DistributedError(f"{self.name} is process {local_rank + 1} on its machine but gpus={devices} "
                                   "names fewer devices: start one process per listed GPU")
        return devices[local_rank]

    def share_network(self, net: Network) -> None:
        """Rank 0's parameters and `seen` on every rank (so only rank 0 reads the weights)."""
        layout = _Layout(net, PARAMETER_KINDS)
        self.check_same(layout.signature(), "convolutional layers (cfg)")
        flat = np.zeros(layout.stop, np.float32)
        if self.is_root:
            layout.read(net, flat)
        with self.waiting("the weight broadcast"):
            self.comm.Bcast(flat, root=0)
        seen = self.bcast(net.seen, "the broadcast of seen")
        if not self.is_root:
            layout.write(net, flat)
            net.set_seen(seen)


def open_group(timeout: Optional[float]) -> Group:
    return Group(timeout)


# --------------------------------------------------------------------------- the training loop


AGREED = "_darknet_py_agreed"


def agreed(exc: BaseException) -> BaseException:
    """Mark `exc` as raised on every rank at the same point (train() then lets it propagate;
    any other exception aborts the job, since the other ranks would wait for this one)."""
    try:
        setattr(exc, AGREED, True)
    except AttributeError:  # an exception type without a __dict__: treated as not agreed
        pass
    return exc


def is_agreed(exc: BaseException) -> bool:
    return bool(getattr(exc, AGREED, False))


def _stats_row(s: TrainStats) -> list[float]:
    return [s.loss, s.avg_iou, s.avg_obj, s.avg_class, s.recall50, s.recall75, s.iou_loss, s.class_loss,
            float(s.count)]


def _failure_report(exc: BaseException) -> tuple[str, str, str]:
    kind = ("interrupt" if isinstance(exc, KeyboardInterrupt) else
            "non-finite" if isinstance(exc, NonFiniteLossError) else "error")
    return kind, type(exc).__name__, str(exc)


def _reported(report: tuple[str, str, str], where: str) -> BaseException:
    """The exception a rank raises for another rank's failure: KeyboardInterrupt for an
    interrupt, NonFiniteLossError for a diverged loss (so rank 0 writes nothing), else
    DistributedError."""
    kind, name, text = report
    message = f"{where}: {name}: {text}"
    if kind == "interrupt":
        return KeyboardInterrupt(message)
    return (NonFiniteLossError if kind == "non-finite" else DistributedError)(message)


class DistributedTrainer(_Trainer):
    """_Trainer whose iteration is shared by the ranks of `group` (see the module doc)."""

    def __init__(self, *args: Any, group: Group, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group = group
        self.root = group.is_root
        shard = group.shard
        self.steps = shard.steps
        self.failure: Optional[BaseException] = None  # rank 0's checkpoint or chart failure, raised once agreed
        self.collecting = False  # inside iteration(): defer rank 0's own failures to the agreement
        self._gradients = _Layout(self.net, GRADIENT_KINDS)
        self._rolling = _Layout(self.net, ROLLING_KINDS, self._gradients.stop)
        self._buffer = np.zeros(self._rolling.stop + 1, np.float32)  # the last value: failed ranks
        rolling_size = self._rolling.size
        self._rolling_start = np.zeros(self._rolling.stop, np.float32)  # rolling statistics before the passes
        self._rolling_pass = np.zeros(self._rolling.stop, np.float32)   # one pass's 0.01 * statistics
        self._rolling_sum = np.zeros(rolling_size, np.float64)
        # the single-process mini-batch of each pass, and its weight in the replayed rolling update
        pieces = shard.mini_batch // shard.step_images  # passes (on all ranks) per single-process mini-batch
        self._pass_weights = [ROLLING_MOMENTUM ** (shard.subdivisions - 1 - k) / pieces
                              for k in ((shard.rank * shard.per_rank + t * shard.step_images) // shard.mini_batch
                                        for t in range(self.steps))]
        self.reduce_seconds = 0.0  # time in the gradient all-reduce, packing included (benchmarks)

    # ---- one iteration ----
    def accumulate(self, index: int) -> tuple[TrainStats, ...]:
        group, net = self.group, self.net
        group.iteration = index + 1
        if not self.root:  # rank 0 keeps the momentum; the sum then holds it once
            net.zero_grad()
        stats: list[TrainStats] = []
        failure: Optional[Exception] = None
        try:
            self._passes(index, stats)
        except Exception as exc:  # every rank must still reach the all-reduce
            failure = exc
        began = time.perf_counter()
        buffer = self._buffer
        if failure is None:
            self._gradients.read(net, buffer)
            self._rolling_contribution(buffer[self._rolling.start:self._rolling.stop])
            buffer[-1] = 0
        else:
            buffer[:] = 0
            buffer[-1] = 1
        group.allreduce_sum(buffer, "the gradient all-reduce")
        if buffer[-1] != 0:
            self._raise_agreed(failure, "its forward/backward passes")
        self._gradients.write(net, buffer)
        self._rolling.write(net, buffer)
        self.reduce_seconds += time.perf_counter() - began
        mine = np.array([_stats_row(s) for s in stats], np.float64).reshape(self.steps, STATS_FIELDS)
        every = np.empty((group.size, self.steps, STATS_FIELDS), np.float64)
        with group.waiting("the loss exchange"):
            group.comm.Allgather(mine, every)
        return tuple(TrainStats(*(float(v) for v in row[:8]), int(row[8])) for row in every.reshape(-1, STATS_FIELDS))

    def _passes(self, index: int, stats: list[TrainStats]) -> None:
        """This rank's forward/backward passes. With batch norm, each pass starts from zero
        rolling statistics, so that the engine's update leaves 0.01 * that pass's statistics;
        _rolling_contribution then replays the single-process sequence of updates. On any
        failure the rolling statistics of the iteration's start are put back."""
        if not self._rolling.entries:
            for k in range(self.steps):
                stats.append(self.step(index, k))
            return
        net, rolling = self.net, self._rolling
        rolling.read(net, self._rolling_start)
        self._rolling_sum[:] = 0
        zeros = np.zeros_like(self._rolling_pass)
        try:
            for k in range(self.steps):
                rolling.write(net, zeros)
                stats.append(self.step(index, k))
                rolling.read(net, self._rolling_pass)
                self._rolling_sum += self._pass_weights[k] * self._rolling_pass[rolling.start:rolling.stop]
        except BaseException:
            rolling.write(net, self._rolling_start)
            raise

    def _rolling_contribution(self, out: np.ndarray) -> None:
        """This rank's part of the rolling statistics after the iteration: one process runs
        subdivisions updates r = 0.99 r + 0.01 s_k (engine: convolutional_layer.c), that is
        0.99^S r0 + sum_k 0.99^(S-1-k) 0.01 s_k; a mini-batch shared by several passes counts
        their mean. Rank 0 adds the 0.99^S r0 term."""
        if not self._rolling.entries:
            return
        total = self._rolling_sum
        if self.root:
            total = total + ROLLING_MOMENTUM ** self.group.shard.subdivisions * \
                self._rolling_start[self._rolling.start:self._rolling.stop]
        out[:] = total

    def _raise_agreed(self, failure: Optional[BaseException], stage: str) -> None:
        """Every rank raises: a failed rank its own exception, the others one naming it."""
        reports = self.group.allgather(None if failure is None else _failure_report(failure),
                                       f"the failure report of {stage}")
        if failure is not None:
            raise agreed(failure)
        rank, report = next((r, report) for r, report in enumerate(reports) if report is not None)
        raise agreed(_reported(report, f"rank {rank} failed in {stage} of iteration {self.group.iteration}"))

    def run(self) -> bool:
        max_batches = self.params.max_batches
        while self.done < max_batches:
            self.failure = None
            self.collecting = True
            try:
                progress = self.iteration(self.done)
            finally:
                self.collecting = False
            callback_stop = False
            if self.root and self.failure is None and not self.stop_requested and self.callback is not None:
                try:
                    callback_stop = self.callback(progress) is False
                except BaseException as exc:  # KeyboardInterrupt too: the others must hear of it
                    self.failure = exc
            if self._agree(callback_stop):
                return False
        return True

    def _agree(self, callback_stop: bool) -> bool:
        """The end of an iteration on every rank: raise what some rank failed with, then a stop
        request (KeyboardInterrupt), else True when rank 0's callback returned False."""
        mine = (None if self.failure is None else _failure_report(self.failure), self.stop_requested, callback_stop)
        reports = self.group.allgather(mine, "the end-of-iteration agreement")
        if any(failure is not None for failure, _, _ in reports):
            if self.failure is not None:
                raise agreed(self.failure)
            rank, report = next((r, f) for r, (f, _, _) in enumerate(reports) if f is not None)
            raise agreed(_reported(report, f"rank {rank} failed after iteration {self.group.iteration}"))
        if any(stop for _, stop, _ in reports):
            raise agreed(KeyboardInterrupt())
        return any(verdict for _, _, verdict in reports)

    def checkpoints(self) -> None:
        if self.done % sys.modules[_Trainer.__module__].LAST_EVERY == 0:
            self.check_in_sync()
        super().checkpoints()

    def check_in_sync(self) -> None:
        """DistributedError on every rank unless every rank holds rank 0's weights bit for bit
        (checked with every `_last` checkpoint: what rank 0 writes is what every rank trains)."""
        layout = _Layout(self.net, PARAMETER_KINDS)
        flat = np.empty(layout.stop, np.float32)
        layout.read(self.net, flat)
        self.group.check_same(flat, f"weights after iteration {self.done}",
                              "the ranks diverged (an MPI library whose all-reduce is not the same on every rank?)")

    # ---- rank 0's files ----
    def save(self, suffix: str) -> Any:
        if not self.root:
            return self.path(suffix)
        if not self.collecting:
            return super().save(suffix)
        if self.failure is not None:
            return self.path(suffix)
        try:
            return super().save(suffix)
        except Exception as exc:  # raised on every rank at the end of the iteration
            self.failure = exc
            return self.path(suffix)

    def chart(self, show: bool = False) -> None:
        if not self.root or (self.collecting and self.failure is not None):
            return
        if not self.collecting:
            return super().chart(show)
        try:
            super().chart(show)
        except Exception as exc:
            self.failure = exc


# --------------------------------------------------------------------------- mAP


class DistributedMapRunner:
    """_MapRunner's job on every rank: each detects on its share of the valid list (image i on
    rank i mod N), rank 0 computes mAP@0.5 from every detection in the list's order."""

    def __init__(self, group: Group, data: Any, cfg: Any, names: list[str], progress: bool,
                 gpu: Optional[int] = None, threads: Optional[int] = None):
        config, paths = evaluation_images(data)
        group.check_same([str(p) for p in paths], "mAP image list")
        self.group, self.cfg, self.names, self.gpu, self.threads = group, cfg, names, gpu, threads
        self.classes, self.count = config.classes, len(paths)
        self.paths = paths[group.rank::group.size]
        self.progress = progress and group.is_root
        self.net: Optional[Network] = None
        self._layout: Optional[_Layout] = None

    def __call__(self, train_net: Network) -> float:
        group = self.group
        mine: tuple = (None, None, None)
        try:
            if self.net is None:
                device = {} if self.gpu is None else {"gpu": self.gpu}
                self.net = Network(self.cfg, batch=MAP_BATCH, names=self.names, threads=self.threads, **device)
                self._layout = _Layout(self.net, PARAMETER_KINDS)
            flat = np.empty(self._layout.stop, np.float32)
            self._layout.read(train_net, flat)  # the same cfg: the same layout in both networks
            self._layout.write(self.net, flat)
            if self.net.classes != self.classes:
                raise DataError(f"classes = {self.classes} in the .data file but the network has {self.net.classes}")
            truths, detections = _run_network(self.net, self.paths, self.classes, MAP_BATCH, self.progress)
            mine = (truths, detections, None)
        except Exception as exc:
            mine = (None, None, _failure_report(exc))
            failure: Optional[Exception] = exc
        else:
            failure = None
        parts = group.gather(mine, "the mAP gather")
        result: Any = None
        if group.is_root:
            errors = [(rank, part[2]) for rank, part in enumerate(parts) if part[2] is not None]
            if not errors:
                try:
                    truths = [parts[i % group.size][0][i // group.size] for i in range(self.count)]
                    detections = [parts[i % group.size][1][i // group.size] for i in range(self.count)]
                    result = (float(compute_map(truths, detections, self.classes, names=self.names).map), None)
                except Exception as exc:
                    result = (None, (0, _failure_report(exc)))
            else:
                result = (None, errors[0])
        value, error = group.bcast(result, "the mAP result")
        if error is not None:
            if failure is not None:
                raise agreed(failure)
            rank, report = error
            raise agreed(_reported(report, f"rank {rank} failed computing mAP at iteration {group.iteration}"))
        return value

    def close(self) -> None:
        if self.net is not None:
            self.net.close()


def stop_signals() -> tuple[int, ...]:
    """The signals that ask distributed training to stop after the current iteration."""
    return tuple(getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name))
