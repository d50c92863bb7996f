"""`train()`: darknet's `detector train` loop in Python around the engine's train_step/update.

Iterations are counted as darknet counts them: iteration n (1-based) is the n-th SGD update,
and the network's `seen` after it is n * batch * subdivisions images. Everything random that
the loop decides (which images, their augmentation, the multi-scale sizes) is a pure function
of (seed, iteration), so a run resumed from a checkpoint sees the same data as an uninterrupted
one (see train() for what else a resumed run needs to be bit-identical).
"""
from __future__ import annotations

import dataclasses
import math
import os
import secrets
import signal
import threading
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ._atomic import remove_stale_temporaries, replacing
from ._typing import PathLike
from .chart import InlineChart, draw_chart, write_png
from .data import Augmentation, BatchLoader
from .datafile import DataConfig, read_data_file, read_image_list
from .errors import DarknetError, DarknetIOError, DataError, ShapeError, StateError
from .evaluate import evaluate
from .network import THREADS_VARIABLE, DarknetWarning, LayerInfo, NetParams, Network, TrainStats, resolve_threads
from .progress import Progress, in_notebook, progress_mode

__all__ = ["NonFiniteLossError", "TrainHistory", "TrainProgress", "TrainResult", "learning_rate_at",
           "multiscale_size", "train"]


LOSS_MOMENTUM = 0.9          # avg_loss = .9 avg_loss + .1 loss
LAST_EVERY = 100             # iterations between `_last.weights`
RESIZE_EVERY = 10            # random=1: a new input size every 10 iterations
FULL_SIZE_TAIL = 100         # ... but the cfg's size during the last 100
RESIZE_STEP = 32             # sizes are multiples of the network stride
DEFAULT_RANDOM_COEF = 1.4
MAP_MIN_PERIOD = 100         # mAP at most every 100 iterations ...
MAP_EPOCHS = 4               # ... and at least 4 epochs apart
CHART_EVERY = 10             # iterations between chart.png redraws
MAP_BATCH = 4                # images per forward pass of the mAP network
STATE_SUFFIX = ".state.npz"  # beside `_last.weights`: what .weights lacks for an exact resume
GRADIENT_KINDS = ("weights_grad", "biases_grad", "scales_grad")


class NonFiniteLossError(StateError):
    """Training diverged: the loss became NaN or infinite. No checkpoint was written for the
    failing iteration; the last good one in the backup folder is untouched."""


@dataclass(frozen=True)
class TrainProgress:
    """What one iteration did; passed to train()'s callback after every iteration."""

    iteration: int                 # iterations done (1-based, darknet's count; resumed runs continue it)
    max_batches: int
    loss: float                    # this iteration's loss (mean over its subdivisions)
    avg_loss: float                # .9 * previous avg_loss + .1 * loss
    learning_rate: float           # the rate of this iteration's update
    images: int                    # images seen: iteration * batch * subdivisions
    seconds: float                 # wall time of this iteration, seconds
    map: Optional[float]           # latest mAP@0.5 in 0..1, None until one is computed
    width: int                     # network input size of this iteration (changes with random=1)
    height: int
    stats: tuple[TrainStats, ...]  # the engine's measurements, one per subdivision (distributed: per pass of each rank)


@dataclass
class TrainHistory:
    """Per-iteration records of one train() call, and every mAP it computed."""

    iterations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    avg_losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    maps: list[tuple[int, float]] = field(default_factory=list)  # (iteration, mAP 0..1)


@dataclass
class TrainResult:
    """What train() did. Paths are None when that checkpoint was not written by this call."""

    final_weights: Optional[Path]  # `<cfg>_final.weights`, written when max_batches was reached
    last_weights: Optional[Path]   # the latest `<cfg>_last.weights`
    best_weights: Optional[Path]   # `<cfg>_best.weights` (compute_map only)
    start_iteration: int           # where this call began (0, or the resumed weights' iteration)
    iteration: int                 # where it ended
    avg_loss: float                # the final avg_loss (nan when no iteration ran)
    best_map: Optional[float]
    history: TrainHistory = field(repr=False)
    stopped_early: bool            # the callback returned False before max_batches
    seconds: float                 # wall time of the call
    seed: int                      # the seed used (give it back to reproduce or resume the run)
    rank: int = 0                  # distributed: this process's rank (only rank 0 writes, so only its paths are set)

    @property
    def iterations(self) -> int:
        """Iterations run by this call."""
        return self.iteration - self.start_iteration


# --------------------------------------------------------------------------- schedule


def learning_rate_at(iteration: int, params: NetParams) -> float:
    """darknet's get_current_rate for batch number `iteration` (the 1-based iteration whose
    update uses the rate): burn_in ramps lr * (iteration / burn_in)^power first; then
    `constant`; `steps` multiplies by every scale whose step <= iteration; `poly` is
    lr * (1 - iteration / max_batches)^power."""
    lr = params.learning_rate
    if iteration < params.burn_in:
        return lr * (iteration / params.burn_in) ** params.power
    if params.policy == "steps":
        for step, scale in zip(params.steps, params.scales):
            if step > iteration:
                break
            lr *= scale
        return lr
    if params.policy == "poly":
        return lr * max(1.0 - iteration / params.max_batches, 0.0) ** params.power
    if params.policy == "constant":
        return lr
    raise ShapeError(f"unknown learning-rate policy {params.policy!r}")


def multiscale_size(iteration: int, width: int, height: int, max_batches: int, coefficient: float,
                    seed: int) -> tuple[int, int]:
    """random=1's input size for 0-based `iteration`: one draw per block of 10 iterations,
    r ~ U[1/coefficient, coefficient], size round(r * init / 32 + 1) * 32 (darknet's formula,
    the +1 included); the cfg's size during the last 100 iterations. Depends only on its
    arguments, so a resumed run gets the sizes an uninterrupted one would."""
    if iteration + FULL_SIZE_TAIL >= max_batches:
        return width, height
    block = iteration // RESIZE_EVERY
    r = np.random.default_rng([seed, 0x6D73, block]).uniform(1.0 / coefficient, coefficient)
    return tuple(int(round(r * size / RESIZE_STEP + 1)) * RESIZE_STEP for size in (width, height))


def numbered_period(max_batches: int) -> int:
    """Iterations between `_<N>.weights` checkpoints: 1000, or 10000 once max_batches >= 10000."""
    return 10000 if max_batches >= 10000 else 1000


# --------------------------------------------------------------------------- helpers


def _yolo_settings(net: Any) -> LayerInfo:
    """The last [yolo] layer, whose jitter, random, resize and max_boxes drive training."""
    if not net.yolo_layers:
        raise StateError(f"{net.cfg_path} has no [yolo] layer to train")
    return net.yolo_layers[-1]


def _backup_dir(config: DataConfig, backup_dir: Optional[PathLike]) -> Path:
    directory = Path(backup_dir) if backup_dir is not None else (config.backup or config.path.parent / "backup")
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)  # partial files of a run that was killed while writing
    return directory


def _mini_batch(params: NetParams, cfg: Path) -> int:
    if params.subdivisions < 1 or params.batch < params.subdivisions:
        raise ShapeError(f"{cfg}: batch={params.batch} must be >= subdivisions={params.subdivisions} >= 1")
    return params.batch // params.subdivisions


class _Reporter:
    """Progress on stderr (see progress.Progress: a bar or widget where someone watches, darknet's
    line per iteration in logs, nothing when disabled) and, with plot, the chart inline in a
    notebook."""

    def __init__(self, enabled: bool, max_batches: int, plot: bool = False, chart_path: Optional[Path] = None):
        self.progress = Progress(max_batches, "train", enabled=enabled, unit="it")
        self._seconds: list[float] = []
        self.inline = InlineChart() if plot and in_notebook() else None
        if plot and self.inline is None:
            warnings.warn(f"plot=True shows the chart inline only in a Jupyter or Colab notebook; it is written to "
                          f"{chart_path}", DarknetWarning, stacklevel=3)

    def iteration(self, p: TrainProgress) -> None:
        if self.progress.mode == "off":
            return
        self._seconds = (self._seconds + [p.seconds])[-20:]  # ETA from the last 20 iterations
        hours_left = (p.max_batches - p.iteration) * sum(self._seconds) / len(self._seconds) / 3600
        map_text = f", mAP {100 * p.map:.2f}%" if p.map is not None else ""
        self.progress.update(
            p.iteration,
            postfix=f"loss {p.loss:.4f} avg {p.avg_loss:.4f} lr {p.learning_rate:.6f} {p.width}x{p.height}{map_text}",
            line=f" {p.iteration}: {p.loss:.6f}, {p.avg_loss:.6f} avg loss, {p.learning_rate:.6f} rate, "
                 f"{p.seconds:.6f} seconds, {p.images} images{map_text}, {hours_left:.6f} hours left")

    def message(self, text: str) -> None:
        self.progress.print(text)

    def show_chart(self, image: np.ndarray) -> None:
        if self.inline is not None:
            self.inline.show(image)

    def close(self) -> None:
        self.progress.close()


class _MapRunner:
    """mAP of the current weights on a separate inference network at the cfg's size (as darknet's
    net_map): the weights go through a temporary .weights file in the backup folder."""

    def __init__(self, data: Path, cfg: Path, names: list[str], directory: Path, progress: bool,
                 gpu: Optional[int] = None, threads: Optional[int] = None):
        self.data, self.cfg, self.names, self.directory = data, cfg, names, directory
        self.gpu, self.threads = gpu, threads
        self.progress = progress
        self.net: Optional[Any] = None

    def __call__(self, train_net: Any) -> float:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".map-{os.getpid()}-", suffix=".weights")
        os.close(fd)
        try:
            train_net.save_weights(temporary)
            if self.net is None:
                device = {} if self.gpu is None else {"gpu": self.gpu}
                self.net = Network(self.cfg, batch=MAP_BATCH, names=self.names, threads=self.threads, **device)
            self.net.load_weights(temporary)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return float(evaluate(self.data, None, None, network=self.net, batch=MAP_BATCH,
                              progress=self.progress).map)

    def close(self) -> None:
        if self.net is not None:
            self.net.close()


# --------------------------------------------------------------------------- resume state


@dataclass(frozen=True)
class _ResumeState:
    """The sidecar of a `_last.weights`: darknet's SGD momentum (the engine's update buffers,
    which .weights does not hold), avg_loss and the seed, for a resume identical to no stop."""

    seen: int
    seed: int
    avg_loss: float
    buffers: dict[tuple[int, str], np.ndarray]


def state_path(weights: PathLike) -> Path:
    """`x_last.weights` -> `x_last.state.npz`."""
    return Path(weights).with_suffix(STATE_SUFFIX)


def _save_state(net: Any, path: Path, seed: int, avg_loss: float) -> None:
    arrays = {f"g{layer.index}_{kind}": net.get_parameter(layer.index, kind)
              for layer in net.layers if layer.type == "convolutional"
              for kind in GRADIENT_KINDS if kind != "scales_grad" or layer.batch_normalize}
    try:
        with replacing(path) as temporary, open(temporary, "wb") as f:
            np.savez(f, seen=net.seen, seed=seed, avg_loss=avg_loss, **arrays)
    except OSError as exc:  # disk full, file size limit, read-only folder: the old state is intact
        raise DarknetIOError(f"{path}: cannot write the resume state: {exc.strerror or exc}") from exc


def _read_state(path: Path) -> Optional[_ResumeState]:
    if not path.is_file():
        return None
    try:
        with np.load(path) as npz:
            buffers = {}
            for key in npz.files:
                if key.startswith("g"):
                    index, kind = key[1:].split("_", 1)
                    buffers[int(index), kind] = npz[key]
            return _ResumeState(int(npz["seen"]), int(npz["seed"]), float(npz["avg_loss"]), buffers)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"{path}: unreadable resume state ({exc}); momentum restarts from zero", stacklevel=3)
        return None


def _restore_state(net: Any, state: _ResumeState, path: Path) -> bool:
    """Put the momentum back when the state belongs to the loaded weights (same `seen`)."""
    if state.seen != net.seen:
        warnings.warn(f"{path}: seen {state.seen} differs from the weights' {net.seen}; "
                      "momentum restarts from zero", stacklevel=3)
        return False
    net.zero_grad()  # allocates the engine's update buffers
    try:
        for (index, kind), values in state.buffers.items():
            net.set_parameter(index, kind, values)
    except DarknetError as exc:
        net.zero_grad()
        warnings.warn(f"{path}: does not fit the cfg ({exc}); momentum restarts from zero", stacklevel=3)
        return False
    return True


# --------------------------------------------------------------------------- the loop


class _Trainer:
    """State of one train() call; run() is the loop."""

    def __init__(self, net: Any, loader: Any, params: NetParams, *, cfg: Path, backup: Path, seed: int,
                 start: int, callback: Optional[Callable[[TrainProgress], Any]], map_runner: Optional[_MapRunner],
                 map_period: int, reporter: _Reporter, plot_every: int = 0):
        self.net, self.loader, self.params = net, loader, params
        self.plot_every = plot_every  # iterations between inline charts (0: none)
        self.backup, self.stem, self.seed = backup, cfg.stem, seed
        self.callback, self.map_runner, self.map_period = callback, map_runner, map_period
        self.reporter = reporter
        self.images_per_iteration = params.batch
        self.steps = params.subdivisions  # forward/backward passes per iteration (distributed: per rank)
        self.start = self.done = start
        self.last_map_iteration = start
        self.yolo = _yolo_settings(net)
        self.init_size = (params.width, params.height)
        self.size = self.init_size
        self.avg_loss = math.nan
        self.latest_map: Optional[float] = None
        self.best_map: Optional[float] = None
        self.history = TrainHistory()
        self.paths: dict[str, Path] = {}
        self.in_iteration = False  # the update buffers hold a part-accumulated gradient
        self.stop_requested = False  # set by the first Ctrl-C (see _DeferredInterrupt)

    def path(self, suffix: str) -> Path:
        return self.backup / f"{self.stem}_{suffix}.weights"

    def save(self, suffix: str) -> Path:
        """Write `<cfg>_<suffix>.weights` for the iterations done (save_weights is atomic);
        `_last` also gets its resume state."""
        self.net.set_seen(self.done * self.images_per_iteration)
        path = Path(self.net.save_weights(self.path(suffix)))
        if suffix == "last" and not self.in_iteration:
            _save_state(self.net, state_path(path), self.seed, self.avg_loss)
        elif suffix == "last":  # the momentum of the iterations done is lost: no state, not a stale one
            state_path(path).unlink(missing_ok=True)
        self.paths[suffix] = path
        return path

    def run(self) -> bool:
        """Train to max_batches; False when the callback stopped it first."""
        max_batches = self.params.max_batches
        while self.done < max_batches:
            progress = self.iteration(self.done)
            if self.stop_requested:
                raise KeyboardInterrupt
            if self.callback is not None and self.callback(progress) is False:
                return False
        return True

    def iteration(self, index: int) -> TrainProgress:
        """Train 0-based iteration `index` (subdivisions steps, one update) and do its bookkeeping."""
        began = time.perf_counter()
        self.resize_for(index)
        self.in_iteration = True
        stats = self.accumulate(index)
        loss = sum(s.loss for s in stats) / len(stats)
        rate = learning_rate_at(index + 1, self.params)
        self.net.update(rate, self.params.momentum, self.params.decay, self.images_per_iteration)
        self.done = index + 1  # right after update: a checkpoint must count exactly the updates made
        self.in_iteration = False
        self.net.set_seen(self.done * self.images_per_iteration)
        self.avg_loss = loss if math.isnan(self.avg_loss) else LOSS_MOMENTUM * self.avg_loss + (1 - LOSS_MOMENTUM) * loss
        self.record(loss, rate)
        self.checkpoints()
        progress = TrainProgress(self.done, self.params.max_batches, loss, self.avg_loss, rate,
                                 self.done * self.images_per_iteration, time.perf_counter() - began,
                                 self.latest_map, self.size[0], self.size[1], stats)
        self.reporter.iteration(progress)
        return progress

    def accumulate(self, index: int) -> tuple[TrainStats, ...]:
        """The forward/backward passes of iteration `index`; their stats."""
        return tuple(self.step(index, k) for k in range(self.steps))

    def resize_for(self, index: int) -> None:
        if not self.yolo.random:
            return
        coefficient = self.yolo.resize if self.yolo.resize != 1 else DEFAULT_RANDOM_COEF
        size = multiscale_size(index, *self.init_size, self.params.max_batches, coefficient, self.seed)
        if size != self.size:
            self.net.resize(*size)
            self.size = size

    def step(self, index: int, k: int) -> TrainStats:
        batch = self.loader.get(index * self.steps + k, *self.size)
        try:
            stats = self.net.train_step(batch.images, batch.truths, index)
        except StateError as exc:  # the engine's answer to a non-finite loss
            raise NonFiniteLossError(f"iteration {index + 1}: {exc}") from exc
        if not math.isfinite(stats.loss):
            raise NonFiniteLossError(f"iteration {index + 1}: the loss is {stats.loss}")
        return stats

    def record(self, loss: float, rate: float) -> None:
        h = self.history
        h.iterations.append(self.done)
        h.losses.append(loss)
        h.avg_losses.append(self.avg_loss)
        h.learning_rates.append(rate)

    def checkpoints(self) -> None:
        done, max_batches = self.done, self.params.max_batches
        if done % LAST_EVERY == 0:
            self.save("last")
        if done % numbered_period(max_batches) == 0:
            self.save(str(done))
        if self.map_runner is not None and self.map_due():
            self.compute_map()
        if done == max_batches:
            self.save("final")
        shown = self.plot_every > 0 and (done % self.plot_every == 0 or done == max_batches)
        if done % CHART_EVERY == 0 or done == max_batches or shown:
            self.chart(show=shown)

    def map_due(self) -> bool:
        """darknet: when iteration >= max(previous mAP + period, burn_in), and at max_batches."""
        due = max(self.last_map_iteration + self.map_period, self.params.burn_in)
        return self.done >= due or self.done == self.params.max_batches

    def compute_map(self) -> None:
        value = self.map_runner(self.net)
        self.last_map_iteration = self.done
        self.latest_map = value
        self.history.maps.append((self.done, value))
        improved = self.best_map is None or value > self.best_map
        if improved:
            self.best_map = value
            self.save("best")
        self.reporter.message(f"mAP@0.5 at iteration {self.done}: {100 * value:.2f}%"
                              f"{' (new best)' if improved else ''}, best {100 * self.best_map:.2f}%")
        self.chart(show=self.plot_every > 0)

    def chart(self, show: bool = False) -> None:
        """Redraw chart.png; with `show`, also in the notebook (train(plot=...))."""
        image = draw_chart(list(zip(self.history.iterations, self.history.avg_losses)), self.history.maps,
                           self.params.max_batches, title=self.stem)
        write_png(self.backup / "chart.png", image)
        if show:
            self.reporter.show_chart(image)

    def stop(self) -> None:
        """Leave `_last.weights` and the chart for the iterations done (nothing when this call made
        no update: an older run's `_last.weights` in the same folder must survive)."""
        if self.done > self.start:
            self.save("last")
            self.chart()


class _DeferredInterrupt:
    """The first Ctrl-C asks the loop to stop after the current iteration (so `_last` gets its
    exact resume state); a second one interrupts at once. Only in the main thread, and only
    when SIGINT has Python's default handler (an application's own handler is left alone).
    Distributed training treats SIGTERM and SIGUSR1 (mpirun forwards it) as Ctrl-C too."""

    def __init__(self, trainer: _Trainer, reporter: _Reporter, signals: Sequence[int] = (signal.SIGINT,)):
        self.trainer, self.reporter = trainer, reporter
        self.signals = tuple(signals)
        self.installed: list[int] = []

    def __enter__(self) -> "_DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                default = signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
                if signal.getsignal(number) is default:
                    signal.signal(number, self.handle)
                    self.installed.append(number)
        return self

    def handle(self, signum: int, frame: Any) -> None:
        if self.trainer.stop_requested:
            raise KeyboardInterrupt
        self.trainer.stop_requested = True
        self.reporter.message("interrupted: stopping after this iteration (Ctrl-C again to stop now)")

    def __exit__(self, *exc_info: object) -> None:
        for number in self.installed:
            signal.signal(number, signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL)
        self.installed = []


def _open_network(cfg: Path, weights: Optional[PathLike], names: list[str], seed: int,
                  gpu: Optional[int] = None, group: Any = None, threads: Optional[int] = None) -> tuple[Any, NetParams]:
    with Network(cfg, batch=1, threads=1) as probe:  # the mini-batch size comes from the cfg's [net]
        mini_batch = _mini_batch(probe.params, cfg)
        if group is not None:  # distributed: this rank's passes (Shard.step_images)
            mini_batch = group.plan(probe.params.batch, probe.params.subdivisions, cfg).step_images
    device = {} if gpu is None else {"gpu": gpu}  # a CPU run calls Network exactly as before
    net = Network(cfg, weights, batch=mini_batch, names=names, seed=seed, threads=threads, **device)
    if group is not None:
        try:
            group.share_network(net)  # rank 0's weights and seen everywhere
        except BaseException:
            net.close()
            raise
    return net, net.params


def _backup_path(config: DataConfig, backup_dir: Optional[PathLike]) -> Path:
    """The backup folder, not created (distributed ranks other than 0 write nothing)."""
    return Path(backup_dir) if backup_dir is not None else (config.backup or config.path.parent / "backup")


def _stop_signals() -> tuple[int, ...]:
    from .distributed import stop_signals

    return stop_signals()


def _training_gpu(gpus: Union[None, str, Sequence[int]]) -> Union[None, str, int]:
    """train()'s `gpus` as Network's `gpu`: one device (multi-GPU training is not supported)."""
    if gpus is None or isinstance(gpus, str):
        return gpus
    devices = [int(g) for g in gpus]
    if len(devices) > 1:
        raise ShapeError(f"gpus={devices}: training on several GPUs is not supported; name one device")
    return devices[0] if devices else None


def _map_period(train_images: int, images_per_iteration: int) -> int:
    """Iterations between mAP runs: 4 epochs (epoch = train images / batch), at least 100."""
    return max(MAP_EPOCHS * train_images // images_per_iteration, MAP_MIN_PERIOD)


def _plot_period(plot: Union[bool, int]) -> int:
    """Iterations between inline charts for train(plot=...): 0 (off), LAST_EVERY for True, or N."""
    if isinstance(plot, bool):
        return LAST_EVERY if plot else 0
    if not isinstance(plot, int) or plot < 1:
        raise ShapeError(f"plot must be True, False or a number of iterations >= 1, got {plot!r}")
    return plot


def train(data: PathLike, cfg: PathLike, weights: Optional[PathLike] = None, *,
          callback: Optional[Callable[[TrainProgress], Any]] = None, compute_map: bool = False,
          backup_dir: Optional[PathLike] = None, max_batches: Optional[int] = None, clear: bool = False,
          seed: Optional[int] = None, progress: bool = True, workers: int = 2,
          gpus: Union[None, str, Sequence[int]] = None, plot: Union[bool, int] = False,
          distributed: bool = False, distributed_timeout: Optional[float] = 600.0,
          threads: Optional[int] = None) -> TrainResult:
    """`darknet detector train data cfg [weights] [-map] [-clear]` in-process.

    Trains on the `.data` file's `train` list with the cfg's [net] settings (batch split into
    `subdivisions` forward passes, SGD once per batch, darknet's learning-rate schedule and
    augmentation; random=1 multi-scale). `max_batches` overrides the cfg's.

    Checkpoints go to `backup_dir` (default: the .data's `backup`, else `backup/` beside the
    .data), named after the cfg: `_last.weights` every 100 iterations and when stopped early,
    `_<N>.weights` every 1000 (10000 once max_batches >= 10000), `_best.weights` on a new best
    mAP, `_final.weights` at max_batches; `chart.png` plots avg loss and mAP. Every file is
    written atomically. With compute_map, mAP@0.5 on the `valid` list (else `train`) runs every
    max(4 epochs, 100) iterations once past burn_in, and at max_batches.

    Weights whose `seen` > 0 resume at iteration seen / (batch * subdivisions) unless `clear`.
    Data, augmentation and multi-scale sizes depend only on (seed, iteration); `seed=None`
    draws one (it is in the result). .weights files do not hold SGD momentum (darknet loses it
    on resume), so `_last.weights` gets a sidecar `_last.state.npz` with the momentum buffers,
    avg_loss and seed: resuming from `_last.weights` (seed=None takes the stored seed) then
    gives the weights an uninterrupted run would, bit for bit. Other weights, or a sidecar whose
    `seen` does not match, resume as darknet does, from zero momentum.

    callback(TrainProgress) runs after every iteration; returning False stops cleanly. On
    Ctrl-C (KeyboardInterrupt), an exception from the callback or the data, `_last.weights`
    is written for the iterations completed, then the exception propagates (Ctrl-C too: a
    script that was interrupted should stop). In the main thread the first Ctrl-C lets the
    current iteration finish (its `_last` then has the exact resume state), a second one stops
    at once (`_last` without resume state: momentum is lost as in darknet). A NaN/inf loss raises NonFiniteLossError and
    writes nothing, so the last good checkpoint survives. `progress` prints to stderr: a tqdm
    bar on a terminal (a widget in Jupyter/Colab), else one darknet-like line per iteration;
    False prints nothing. `plot` (in a notebook): the loss/mAP chart shown inline and updated in
    place, every 100 iterations with True or every `plot` iterations, at every mAP and at the
    end (elsewhere a warning: chart.png in the backup folder is the chart). `workers`
    data-loading threads.
    `threads`: the engine's threads for the training and mAP passes (default: DARKNET_PY_THREADS,
    else the CPUs this process may use, divided among the ranks of a distributed job that share
    this machine). The data-loading threads run beside them: they wait for a batch's decode and
    augmentation only, and the engine's threads sleep after a short spin (GOMP_SPINCOUNT=20000,
    see _engine.py) rather than spinning on while a loader needs the CPU.
    `gpus` (a CUDA build): None trains on the CPU, [0] on CUDA device 0 (StateError without
    one), "auto" on device 0 when usable else the CPU with a warning; one device only. The
    mAP runs use the same device.

    `distributed` (needs mpi4py, the `mpi` extra): this process is one rank of an MPI job
    (`mpirun -np N python script.py`, every rank calling train() with the same arguments); the
    ranks share every batch (the cfg's `batch` is the global batch, divisible by N) and
    all-reduce the gradients before each update, so the weights are those of one process
    (batch-norm statistics excepted: per rank); see darknet_py.distributed. Rank 0 reads the
    weights and resume state, writes the checkpoints, prints and calls `callback` (False stops
    every rank); the others return a TrainResult without paths. `gpus` then lists one device
    per rank of a machine. A rank that waits more than `distributed_timeout` seconds for the
    others at a collective call aborts the job with a message (None: wait for ever).
    """
    group = _open_group(distributed, distributed_timeout)
    try:
        return _train(data, cfg, weights, group, callback=callback, compute_map=compute_map, backup_dir=backup_dir,
                      max_batches=max_batches, clear=clear, seed=seed, progress=progress, workers=workers, gpus=gpus,
                      plot=plot, threads=_training_threads(threads, group))
    except BaseException as exc:
        if group is not None and group.size > 1:
            from .distributed import is_agreed

            if not is_agreed(exc):  # the other ranks would wait for this one at their next collective call
                text = " ".join(str(exc).split())
                group.abort(f"{type(exc).__name__}{': ' + text if text else ''}")
        raise
    finally:
        if group is not None:
            group.close()


def _training_threads(threads: Optional[int], group: Any) -> int:
    """train()'s engine threads: as given, else DARKNET_PY_THREADS, else this process's CPUs; in
    a distributed job without either, those CPUs shared among the ranks on this machine (two
    ranks on 2 cores get a thread each instead of fighting over both)."""
    if group is None:
        return resolve_threads(threads)
    # every rank takes part in the count, whatever it was told (a collective call), watched
    with group.waiting("counting the ranks on this machine"):
        local = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED)
        try:
            ranks_here = local.Get_size()
        finally:
            local.Free()
    if threads is not None or os.environ.get(THREADS_VARIABLE, "").strip():
        return resolve_threads(threads)
    return max(1, resolve_threads() // ranks_here)


def _open_group(distributed: bool, timeout: Optional[float]) -> Any:
    """The MPI process group for train(distributed=True), else None."""
    if not isinstance(distributed, bool):
        raise ShapeError(f"distributed must be True or False, got {distributed!r}")
    if not distributed:
        return None
    from .distributed import open_group  # mpi4py only when asked for

    return open_group(timeout)


def _train(data: PathLike, cfg: PathLike, weights: Optional[PathLike], group: Any, *,
           callback: Optional[Callable[[TrainProgress], Any]], compute_map: bool, backup_dir: Optional[PathLike],
           max_batches: Optional[int], clear: bool, seed: Optional[int], progress: bool, workers: int,
           gpus: Union[None, str, Sequence[int]], plot: Union[bool, int], threads: int) -> TrainResult:
    root = group is None or group.is_root  # distributed: rank 0 reads the resume files, writes, reports
    config = read_data_file(data)
    if config.train is None:
        raise DataError(f"{config.path}: no 'train = ...' image list")
    images = read_image_list(config.train)
    if not images:
        raise DataError(f"{config.train}: no training images")
    if group is not None:
        group.check_same([str(p) for p in images], "train image list")
    state = _read_state(state_path(weights)) if root and weights is not None and not clear else None
    if seed is None and root:
        seed = state.seed if state is not None else secrets.randbits(63)
    if group is not None:
        seed = group.bcast(seed, "the seed")
    seed = int(seed)
    if seed < 0:
        raise ShapeError(f"seed must be >= 0, got {seed}")
    cfg = Path(cfg)
    backup = _backup_dir(config, backup_dir) if root else _backup_path(config, backup_dir)
    began = time.perf_counter()
    gpu = _training_gpu(gpus) if group is None else group.device(gpus)
    net, params = _open_network(cfg, weights if root else None, config.names, seed, gpu, group, threads)
    device = getattr(net, "gpu", None)  # "auto" resolved once: mAP runs where training runs
    map_runner: Optional[Any] = None
    try:
        if max_batches is not None:
            params = dataclasses.replace(params, max_batches=int(max_batches))
        if params.max_batches < 1:
            raise ShapeError(f"max_batches must be >= 1, got {params.max_batches}")
        if net.classes != config.classes:
            raise DataError(f"{config.path}: classes = {config.classes} but {cfg} has {net.classes}")
        start = 0 if clear else net.seen // params.batch
        yolo = _yolo_settings(net)
        augmentation = Augmentation(jitter=yolo.jitter, hue=params.hue, saturation=params.saturation,
                                    exposure=params.exposure, flip=params.flip, mosaic=params.mosaic,
                                    letter_box=params.letter_box)
        plot_every = _plot_period(plot) if root else 0
        reporter = _Reporter(progress and root, params.max_batches, plot=plot_every > 0,
                             chart_path=backup / "chart.png")
        if compute_map:  # its own bar only where bars show; in logs the training lines report the mAP
            bar = progress_mode(progress) == "bar"
            if group is None:
                map_runner = _MapRunner(config.path, cfg, config.names, backup, bar, gpu=device, threads=threads)
            else:
                from .distributed import DistributedMapRunner

                map_runner = DistributedMapRunner(group, config.path, cfg, config.names, bar, gpu=device,
                                                  threads=threads)
        loading = dict(classes=config.classes, batch=_mini_batch(params, cfg), width=params.width,
                       height=params.height, augmentation=augmentation, max_boxes=yolo.max_boxes, seed=seed,
                       workers=workers)
        if group is not None:  # this rank's slots of every single-process batch
            loading.update(batch=group.shard.step_images, slot_plan=group.shard.source)
        with BatchLoader(images, **loading) as loader:
            options = dict(cfg=cfg, backup=backup, seed=seed, start=min(start, params.max_batches), callback=callback,
                           map_runner=map_runner, map_period=_map_period(len(images), params.batch),
                           reporter=reporter, plot_every=plot_every)
            if group is None:
                trainer = _Trainer(net, loader, params, **options)
            else:
                from .distributed import DistributedTrainer

                trainer = DistributedTrainer(net, loader, params, group=group, **options)
            if state is not None and _restore_state(net, state, state_path(weights)):
                trainer.avg_loss = state.avg_loss
            if group is not None:
                trainer.avg_loss = group.bcast(trainer.avg_loss, "the resumed avg_loss")
            signals = (signal.SIGINT,) if group is None else _stop_signals()
            try:
                with _DeferredInterrupt(trainer, reporter, signals):
                    finished = trainer.run()
            except NonFiniteLossError:
                raise
            except BaseException:
                trainer.stop()
                raise
            finally:
                reporter.close()
            if finished and trainer.done == trainer.start:  # resumed at max_batches: nothing to train
                trainer.save("final")
            trainer.stop()
    finally:
        if map_runner is not None:
            map_runner.close()
        net.close()
    return TrainResult(
        final_weights=trainer.paths.get("final"), last_weights=trainer.paths.get("last"),
        best_weights=trainer.paths.get("best"), start_iteration=trainer.start, iteration=trainer.done,
        avg_loss=trainer.avg_loss, best_map=trainer.best_map, history=trainer.history,
        stopped_early=not finished, seconds=time.perf_counter() - began, seed=seed,
        rank=0 if group is None else group.rank,
    )
