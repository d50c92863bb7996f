"""darknet_py.train: schedule, loop bookkeeping (with a fake network and loader), and the real engine."""
from __future__ import annotations

import io
import json
import math
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import cv2
import numpy as np
import pytest

import darknet_py as dn
from darknet_py.chart import draw_chart, save_chart
from darknet_py.network import NetParams, TrainStats
from darknet_py.progress import Progress
import darknet_py.train  # noqa: F401 - loads the module that the function `dn.train` hides
from darknet_py.train import (NonFiniteLossError, learning_rate_at, multiscale_size, numbered_period, state_path,
                              train)

train_module = sys.modules["darknet_py.train"]


def make_params(**overrides) -> NetParams:
    values = dict(batch=4, subdivisions=2, width=64, height=64, channels=3, momentum=0.9, decay=0.0005,
                  learning_rate=0.001, burn_in=0, power=4.0, max_batches=20, policy="constant", steps=(),
                  scales=(), angle=0.0, saturation=1.5, exposure=1.5, hue=0.1, mosaic=False, flip=True,
                  letter_box=False)
    values.update(overrides)
    return NetParams(**values)


# --------------------------------------------------------------------------- learning rate


def test_burn_in_ramps_with_power():
    params = make_params(burn_in=1000, power=4.0, learning_rate=0.001, policy="steps", steps=(400,), scales=(0.1,))
    assert learning_rate_at(500, params) == pytest.approx(0.001 * 0.5 ** 4)
    assert learning_rate_at(1, params) == pytest.approx(0.001 * (1 / 1000) ** 4)
    # burn_in wins over the steps already passed; after it, the step's scale applies
    assert learning_rate_at(999, params) == pytest.approx(0.001 * 0.999 ** 4)
    assert learning_rate_at(1000, params) == pytest.approx(0.0001)


def test_steps_multiply_by_every_scale_whose_step_is_reached():
    params = make_params(policy="steps", steps=(400, 450), scales=(0.1, 0.5), learning_rate=0.01)
    assert learning_rate_at(399, params) == pytest.approx(0.01)
    assert learning_rate_at(400, params) == pytest.approx(0.001)
    assert learning_rate_at(449, params) == pytest.approx(0.001)
    assert learning_rate_at(450, params) == pytest.approx(0.0005)
    assert learning_rate_at(10_000, params) == pytest.approx(0.0005)


def test_poly_and_constant():
    poly = make_params(policy="poly", power=2.0, max_batches=1000, learning_rate=0.01)
    assert learning_rate_at(250, poly) == pytest.approx(0.01 * 0.75 ** 2)
    assert learning_rate_at(1000, poly) == 0.0
    constant = make_params(policy="constant", learning_rate=0.003)
    assert learning_rate_at(1, constant) == learning_rate_at(5000, constant) == pytest.approx(0.003)


def test_numbered_checkpoint_period():
    assert numbered_period(9999) == 1000
    assert numbered_period(10_000) == 10_000


# --------------------------------------------------------------------------- random=1 sizes


def test_multiscale_sizes_are_bounded_multiples_of_32_and_full_size_at_the_end():
    max_batches, init_w, init_h = 2000, 416, 288
    low_w, high_w = (round(init_w * c / 32 + 1) * 32 for c in (1 / 1.4, 1.4))
    low_h, high_h = (round(init_h * c / 32 + 1) * 32 for c in (1 / 1.4, 1.4))
    sizes = [multiscale_size(i, init_w, init_h, max_batches, 1.4, seed=3) for i in range(max_batches)]
    for i, (w, h) in enumerate(sizes):
        assert w % 32 == 0 and h % 32 == 0
        assert low_w <= w <= high_w and low_h <= h <= high_h
        assert (w, h) == sizes[i - i % 10]  # one draw per block of 10 iterations
    assert all(size == (init_w, init_h) for size in sizes[-100:])
    assert len(set(sizes[:-100])) > 3  # the sizes really vary
    assert sizes == [multiscale_size(i, init_w, init_h, max_batches, 1.4, seed=3) for i in range(max_batches)]
    assert sizes != [multiscale_size(i, init_w, init_h, max_batches, 1.4, seed=4) for i in range(max_batches)]


# --------------------------------------------------------------------------- fakes


class FakeNetwork:
    """Duck-typed Network: one scalar 'weight' that each update moves by the learning rate.

    Class attributes configure the instances train() creates; `log` records what happened."""

    params = make_params()
    random = 0
    loss: Callable[[int], float] = staticmethod(lambda iteration: 10.0 / (1 + iteration))
    log: list = []
    opened: list = []  # (batch, threads) of every instance

    def __init__(self, cfg, weights=None, batch=1, *, names=None, seed=0, threads=None):
        self.cfg_path, self.batch, self.seed, self.threads = Path(cfg), batch, seed, threads
        type(self).opened.append((batch, threads))
        self.params = type(self).params
        self.yolo_layers = [SimpleNamespace(classes=2, jitter=0.2, random=type(self).random, resize=1.0,
                                            max_boxes=7)]
        self.classes = 2
        self.width, self.height = self.params.width, self.params.height
        self.weight, self._seen = 0.0, 0
        self.layers = []  # no [convolutional] layers: the resume state holds no momentum buffers
        if weights is not None:
            self.load_weights(weights)

    @property
    def seen(self) -> int:
        return self._seen

    def train_step(self, images, truths, iteration=0) -> TrainStats:
        assert images.shape == (self.batch, 3, self.height, self.width)
        self.log.append(("step", iteration, images.shape[2:]))
        loss = type(self).loss(iteration)
        return TrainStats(loss, 0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 1)

    def update(self, learning_rate, momentum, decay, batch_images):
        self.log.append(("update", learning_rate, batch_images))
        self.weight += learning_rate

    def resize(self, width, height):
        self.width, self.height = width, height

    def set_seen(self, seen):
        self._seen = seen

    def save_weights(self, path):
        path = Path(path)
        self.log.append(("save", path.name, self._seen))
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"seen": self._seen, "weight": self.weight}))
        os.replace(temporary, path)
        return path

    def load_weights(self, path):
        state = json.loads(Path(path).read_text())
        self._seen, self.weight = state["seen"], state["weight"]
        return 1

    def zero_grad(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeLoader:
    """Duck-typed BatchLoader: zero images at the requested size; records (index, width, height)."""

    requests: list = []

    def __init__(self, paths, *, classes, batch, width, height, augmentation, max_boxes, seed, workers):
        self.batch, self.width, self.height, self.max_boxes = batch, width, height, max_boxes

    def get(self, index, width=None, height=None):
        width, height = width or self.width, height or self.height
        self.requests.append((index, width, height))
        return SimpleNamespace(images=np.zeros((self.batch, 3, height, width), np.float32),
                               truths=np.zeros((self.batch, self.max_boxes, 5), np.float32), paths=[])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A .data file with 4 (never read) images, fake network and loader; returns a namespace."""
    FakeNetwork.params, FakeNetwork.random = make_params(), 0
    FakeNetwork.loss = staticmethod(lambda iteration: 10.0 / (1 + iteration))
    FakeNetwork.log, FakeLoader.requests = [], []
    monkeypatch.setattr(train_module, "Network", FakeNetwork)
    monkeypatch.setattr(train_module, "BatchLoader", FakeLoader)
    (tmp_path / "train.txt").write_text("".join(f"{tmp_path}/img{i}.jpg\n" for i in range(4)))
    (tmp_path / "obj.names").write_text("a\nb\n")
    data = tmp_path / "obj.data"
    data.write_text(f"classes = 2\ntrain = {tmp_path}/train.txt\nnames = {tmp_path}/obj.names\n"
                    f"backup = {tmp_path}/backup\n")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("[net]\n")

    def run(**kwargs):
        kwargs.setdefault("progress", False)
        kwargs.setdefault("seed", 1)
        return train(data, cfg, **kwargs)

    return SimpleNamespace(data=data, cfg=cfg, backup=tmp_path / "backup", run=run, log=FakeNetwork.log,
                           requests=FakeLoader.requests)


def saves(log) -> list[tuple[str, int]]:
    return [(name, seen) for kind, name, *rest in log if kind == "save" for seen in rest]


def read_fake_weights(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- loop with fakes


def test_callback_gets_every_iteration_and_can_stop(fake):
    FakeNetwork.params = make_params(max_batches=50, burn_in=10, power=2.0)
    seen: list[dn.TrainStats] = []

    def callback(progress):
        seen.append(progress)
        return progress.iteration < 5

    result = fake.run(callback=callback)
    assert [p.iteration for p in seen] == [1, 2, 3, 4, 5]
    first = seen[0]
    assert first.max_batches == 50 and first.images == 4 and first.map is None
    assert first.loss == pytest.approx(10.0) and first.avg_loss == pytest.approx(10.0)
    assert seen[1].loss == pytest.approx(10.0 / 2)
    assert seen[1].avg_loss == pytest.approx(0.9 * 10 + 0.1 * 5)
    assert first.learning_rate == pytest.approx(0.001 * (1 / 10) ** 2)
    assert len(first.stats) == 2 and first.seconds >= 0
    assert result.stopped_early and result.iterations == 5 and result.final_weights is None
    assert result.last_weights == fake.backup / "tiny_last.weights"
    assert read_fake_weights(result.last_weights)["seen"] == 5 * 4
    assert result.history.iterations == [1, 2, 3, 4, 5]
    assert result.avg_loss == pytest.approx(seen[-1].avg_loss)


def test_threads_reach_the_training_network(fake, monkeypatch):
    monkeypatch.delenv("DARKNET_PY_THREADS", raising=False)
    FakeNetwork.opened = []
    fake.run(max_batches=1, threads=3)
    monkeypatch.setenv("DARKNET_PY_THREADS", "2")
    fake.run(max_batches=1, clear=True)
    mini_batch = FakeNetwork.params.batch // FakeNetwork.params.subdivisions
    assert [threads for batch, threads in FakeNetwork.opened if batch == mini_batch] == [3, 2]


def test_one_update_per_iteration_after_subdivisions_steps(fake):
    FakeNetwork.params = make_params(max_batches=3, batch=6, subdivisions=3)
    fake.run()
    kinds = [entry[0] for entry in fake.log if entry[0] != "save"]
    assert kinds == ["step", "step", "step", "update"] * 3
    assert all(entry[2] == 6 for entry in fake.log if entry[0] == "update")  # batch_images = batch
    assert [index for index, _, _ in fake.requests] == list(range(9))  # iteration * subdivisions + k


def test_checkpoint_names_and_iterations(fake):
    FakeNetwork.params = make_params(max_batches=2050, batch=2, subdivisions=1)
    result = fake.run()
    expected = [("tiny_last.weights", n * 2) for n in range(100, 2001, 100)]
    expected += [("tiny_1000.weights", 2000), ("tiny_2000.weights", 4000), ("tiny_final.weights", 4100),
                 ("tiny_last.weights", 4100)]
    assert sorted(saves(fake.log)) == sorted(expected)
    assert result.final_weights == fake.backup / "tiny_final.weights"
    assert read_fake_weights(result.final_weights)["seen"] == 4100
    assert not result.stopped_early and result.iteration == 2050 and result.best_weights is None


def test_resume_continues_the_iteration_count_and_clear_restarts(fake):
    FakeNetwork.params = make_params(max_batches=60)
    first = fake.run(max_batches=30)
    assert read_fake_weights(first.final_weights)["seen"] == 30 * 4
    resumed = fake.run(weights=first.final_weights)
    assert resumed.start_iteration == 30 and resumed.iteration == 60 and resumed.iterations == 30
    assert resumed.history.iterations[0] == 31
    cleared = fake.run(weights=first.final_weights, clear=True, max_batches=5)
    assert cleared.start_iteration == 0 and cleared.history.iterations == [1, 2, 3, 4, 5]


def test_data_batches_depend_only_on_the_iteration(fake):
    FakeNetwork.params = make_params(max_batches=12, subdivisions=2, batch=4)
    fake.run(max_batches=5)
    fake.requests.clear()
    fake.run(weights=fake.backup / "tiny_final.weights")
    assert [index for index, _, _ in fake.requests] == list(range(10, 24))


def test_callback_exception_propagates_after_writing_last(fake):
    FakeNetwork.params = make_params(max_batches=50)

    def callback(progress):
        if progress.iteration == 7:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fake.run(callback=callback)
    assert read_fake_weights(fake.backup / "tiny_last.weights")["seen"] == 7 * 4


def test_keyboard_interrupt_leaves_a_usable_last_checkpoint(fake):
    FakeNetwork.params = make_params(max_batches=50)

    def callback(progress):
        if progress.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake.run(callback=callback)
    last = fake.backup / "tiny_last.weights"
    assert read_fake_weights(last)["seen"] == 3 * 4
    resumed = fake.run(weights=last, max_batches=5)
    assert resumed.start_iteration == 3 and resumed.iteration == 5


def _sigint_at(*iterations: int) -> Callable[[int], float]:
    """A loss function that sends SIGINT to this process during the given 0-based iterations."""
    def loss(iteration):
        if iteration in iterations:
            os.kill(os.getpid(), signal.SIGINT)
        return 1.0

    return loss


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test, whatever this process inherited: a shell job
    started in the background (`nohup ... &`) runs with SIGINT ignored, and then train() rightly
    leaves the disposition alone. Restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_finishes_the_iteration_and_keeps_the_resume_state(fake, default_sigint):
    FakeNetwork.params = make_params(max_batches=50, batch=2, subdivisions=1)
    FakeNetwork.loss = staticmethod(_sigint_at(5))
    with pytest.raises(KeyboardInterrupt):
        fake.run()
    assert read_fake_weights(fake.backup / "tiny_last.weights")["seen"] == 6 * 2
    with np.load(fake.backup / "tiny_last.state.npz") as state:
        assert int(state["seen"]) == 6 * 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_second_ctrl_c_stops_inside_the_iteration_without_resume_state(fake, default_sigint):
    FakeNetwork.params = make_params(max_batches=50, subdivisions=3)
    fake.run(max_batches=2)  # leaves a state that the interrupted run must not leave stale
    FakeNetwork.loss = staticmethod(_sigint_at(5))  # all 3 steps of iteration 6 send one
    with pytest.raises(KeyboardInterrupt):
        fake.run(clear=True)
    assert read_fake_weights(fake.backup / "tiny_last.weights")["seen"] == 5 * 4
    assert not (fake.backup / "tiny_last.state.npz").exists()


def test_resume_state_carries_seed_and_avg_loss(fake):
    FakeNetwork.params = make_params(max_batches=8)
    whole = fake.run(seed=None)
    cut = fake.run(seed=None, max_batches=4, backup_dir=fake.backup / "cut")
    assert cut.seed != whole.seed  # seed=None draws one
    last = fake.backup / "cut" / "tiny_last.weights"
    assert (fake.backup / "cut" / "tiny_last.state.npz").is_file()
    resumed = fake.run(weights=last, seed=None, backup_dir=fake.backup / "cut")
    assert resumed.seed == cut.seed
    assert resumed.history.avg_losses[0] == pytest.approx(0.9 * cut.avg_loss + 0.1 * 10.0 / 5)


def test_interrupt_before_any_update_keeps_an_older_last(fake):
    FakeNetwork.params = make_params(max_batches=50)
    fake.run(max_batches=4)
    before = (fake.backup / "tiny_last.weights").read_bytes()

    def interrupted(iteration):
        raise KeyboardInterrupt

    FakeNetwork.loss = staticmethod(interrupted)
    with pytest.raises(KeyboardInterrupt):
        fake.run(clear=True)
    assert (fake.backup / "tiny_last.weights").read_bytes() == before


@pytest.mark.parametrize("bad", [math.nan, math.inf, "engine"])
def test_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(fake, bad):
    FakeNetwork.params = make_params(max_batches=300)

    def loss(iteration):
        if iteration < 150:
            return 1.0
        if bad == "engine":
            raise dn.StateError("the loss is not finite")
        return bad

    FakeNetwork.loss = staticmethod(loss)
    with pytest.raises(NonFiniteLossError, match="iteration 151") as info:
        fake.run()
    assert isinstance(info.value, dn.DarknetError)
    last = fake.backup / "tiny_last.weights"
    assert read_fake_weights(last)["seen"] == 100 * 4
    assert saves(fake.log) == [("tiny_last.weights", 400)]  # nothing written after the failure


def test_random_resizes_network_and_loader_together(fake):
    FakeNetwork.params = make_params(max_batches=150, width=96, height=64, batch=2, subdivisions=1)
    FakeNetwork.random = 1
    steps = []
    fake.run(callback=lambda p: steps.append((p.width, p.height)))
    loader_sizes = [(w, h) for _, w, h in fake.requests]
    assert loader_sizes == steps
    assert all(size == (96, 64) for size in steps[50:])  # the last 100 iterations
    assert len(set(steps[:50])) > 1
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in steps)
    assert steps[:50] == [multiscale_size(i, 96, 64, 150, 1.4, seed=1) for i in range(50)]


def test_map_schedule_best_and_history(fake, monkeypatch):
    FakeNetwork.params = make_params(max_batches=250, burn_in=150, batch=2, subdivisions=1)
    values = iter([0.2, 0.5, 0.4])
    calls = []

    def fake_evaluate(data, cfg, weights, *, network, batch, progress):
        calls.append(network.weight)
        return SimpleNamespace(map=next(values))

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    maps = []
    result = fake.run(compute_map=True, callback=lambda p: maps.append(p.map))
    # period max(4 * 4 images / 2, 100) = 100, not before burn_in 150, and at max_batches
    assert result.history.maps == [(150, 0.2), (250, 0.5)]
    assert maps[148] is None and maps[149] == 0.2 and maps[-1] == 0.5
    assert result.best_map == 0.5 and result.best_weights == fake.backup / "tiny_best.weights"
    assert ("tiny_best.weights", 150 * 2) in saves(fake.log) and ("tiny_best.weights", 500) in saves(fake.log)
    # the mAP network got the training weights of that moment
    params = FakeNetwork.params
    assert calls[0] == pytest.approx(sum(learning_rate_at(i, params) for i in range(1, 151)))


def test_progress_lines_when_not_a_terminal(fake, capsys):
    FakeNetwork.params = make_params(max_batches=3)
    fake.run(progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(" 1: 10.000000, 10.000000 avg loss, 0.001000 rate, ")
    assert "4 images" in lines[0] and "hours left" in lines[0]
    fake.run(progress=False)
    assert capsys.readouterr().err == ""


def test_chart_png_is_written_and_readable(fake):
    FakeNetwork.params = make_params(max_batches=25)
    fake.run()
    image = cv2.imread(str(fake.backup / "chart.png"))
    assert image is not None and image.shape == (600, 800, 3)
    assert (image[:, :, 0] > 200).any() and (image < 50).any()
    assert not [p for p in fake.backup.iterdir() if p.name.startswith(".")]  # no temporary left


def test_draw_chart_plots_loss_and_map(tmp_path):
    image = draw_chart([(i, 5.0 / i) for i in range(1, 100)], [(50, 0.3), (99, 0.6)], 100, title="t")
    blue = (image[:, :, 0] > 200) & (image[:, :, 1] < 80) & (image[:, :, 2] < 80)
    red = (image[:, :, 2] > 200) & (image[:, :, 0] < 80) & (image[:, :, 1] < 80)
    assert blue.sum() > 100 and red.sum() > 50
    path = save_chart(tmp_path / "c.png", [], [], 10)  # an empty history still gives an image
    assert cv2.imread(str(path)) is not None


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, so progress draws its tqdm bar into it."""

    def isatty(self) -> bool:
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal_lines_in_logs_nothing_when_off():
    terminal = FakeTerminal()
    with Progress(4, "x", stream=terminal) as bar:
        assert bar.mode == "bar" and type(bar._bar).__module__.startswith("tqdm")
        bar.update(2, "long suffix")
        bar.print("a message")
        bar.update(4)
    drawn = terminal.getvalue()
    assert "\r" in drawn and "2/4" in drawn and "4/4" in drawn and "long suffix" in drawn
    assert "a message\n" in drawn

    log = io.StringIO()  # not a terminal: whole lines, never a carriage return
    with Progress(20, "x", stream=log, unit="images") as lines:
        assert lines.mode == "lines"
        for done in range(1, 21):
            lines.update(done)
        lines.update(21, line="a line of its own")
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == [f"x: {n}/20 images" for n in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 20)] + [
        "a line of its own"]

    unknown = io.StringIO()
    with Progress(None, "x", stream=unknown) as counting:
        for done in range(1, 2500):
            counting.update(done)
    assert unknown.getvalue().splitlines() == ["x: 1 it", "x: 1001 it", "x: 2001 it"]

    silent = FakeTerminal()
    with Progress(4, "x", enabled=False, stream=silent) as off:
        off.update(2)
        off.print("nothing")
    assert silent.getvalue() == ""


def test_progress_is_a_widget_in_a_notebook(monkeypatch):
    """In a Jupyter/Colab kernel tqdm.auto gives its notebook class (a widget where ipywidgets is)."""
    import tqdm.auto

    monkeypatch.setattr("darknet_py.progress.in_notebook", lambda: True)
    made = []

    class NotebookBar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", NotebookBar)
    log = io.StringIO()  # even though stderr is not a terminal there
    with Progress(3, "train", stream=log) as bar:
        assert bar.mode == "bar"
        bar.update(3)
    assert made and made[0]["total"] == 3


def test_train_plot_shows_the_chart_inline_in_a_notebook(fake, monkeypatch):
    shown = []

    class FakeChart:
        def show(self, image):
            shown.append(image.shape)

    monkeypatch.setattr(sys.modules["darknet_py.train"], "in_notebook", lambda: True)
    monkeypatch.setattr(sys.modules["darknet_py.train"], "InlineChart", FakeChart)
    FakeNetwork.params = make_params(max_batches=25)
    fake.run(plot=10)
    assert shown == [(600, 800, 3)] * 3  # iterations 10, 20 and the last, 25
    shown.clear()
    fake.run(plot=False)
    assert shown == []
    with pytest.raises(dn.ShapeError, match="plot must be"):
        fake.run(plot=0)


def test_train_plot_outside_a_notebook_warns_and_keeps_the_chart_file(fake):
    FakeNetwork.params = make_params(max_batches=5)
    with pytest.warns(dn.DarknetWarning, match="only in a Jupyter or Colab notebook.*chart.png"):
        fake.run(plot=True)
    assert (fake.backup / "chart.png").is_file()


# --------------------------------------------------------------------------- the real engine


TINY_CFG = dict(classes=2, width=64, height=64, batch=4, subdivisions=2, max_batches=20, burn_in=2,
                learning_rate=0.001, steps=(15, 18), mosaic=False)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """8 + 4 synthesized CrowdHuman-like images prepared for darknet, and a 64x64 yolov4-tiny cfg."""
    root = tmp_path_factory.mktemp("tiny")
    dn.crowdhuman.synthesize(root / "src", train=8, val=4, seed=0, width_range=(64, 128))
    dn.crowdhuman.prepare(root / "src", root / "ds", 64, 64, min_size=2)
    cfg = root / "tiny.cfg"
    dn.cfg.write_cfg(cfg, "yolov4-tiny", **TINY_CFG)
    return SimpleNamespace(data=root / "ds" / "crowdhuman.data", cfg=cfg)


def _conv_parameters(path: Path, cfg: Path) -> list[np.ndarray]:
    with dn.Network(cfg, path) as net:
        return [net.get_parameter(layer.index, kind) for layer in net.layers if layer.type == "convolutional"
                for kind in ("weights", "biases")]


def test_real_training_runs_end_to_end(tiny_dataset, tmp_path):
    progress = []
    result = train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=tmp_path, max_batches=3, seed=5,
                   progress=False, workers=1, callback=progress.append)
    assert [p.iteration for p in progress] == [1, 2, 3]
    assert all(math.isfinite(p.loss) and p.loss > 0 for p in progress)
    assert result.final_weights == tmp_path / "tiny_final.weights" and result.final_weights.is_file()
    with dn.Network(tiny_dataset.cfg, result.final_weights) as net:
        assert net.seen == 3 * 4
    assert cv2.imread(str(tmp_path / "chart.png")) is not None


def test_real_training_same_seed_gives_identical_weights(tiny_dataset, tmp_path):
    a = train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=tmp_path / "a", max_batches=20, seed=7,
              progress=False, workers=2)
    b = train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=tmp_path / "b", max_batches=20, seed=7,
              progress=False, workers=0)
    assert a.final_weights.read_bytes() == b.final_weights.read_bytes()
    assert a.history.losses == b.history.losses


def _interrupt_at(iteration: int) -> Callable:
    def callback(progress):
        if progress.iteration == iteration:
            raise KeyboardInterrupt

    return callback


@pytest.fixture(scope="module")
def whole_run(tiny_dataset, tmp_path_factory):
    """20 uninterrupted iterations (seed 9) to compare resumed runs with."""
    return train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=tmp_path_factory.mktemp("whole"), seed=9,
                 progress=False)


def _interrupted_run(tiny_dataset, directory: Path) -> Path:
    with pytest.raises(KeyboardInterrupt):
        train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=directory, seed=9, progress=False,
              callback=_interrupt_at(10))
    return directory / "tiny_last.weights"


def test_real_resume_from_last_is_bit_identical(tiny_dataset, whole_run, tmp_path):
    last = _interrupted_run(tiny_dataset, tmp_path)
    resumed = train(tiny_dataset.data, tiny_dataset.cfg, last, backup_dir=tmp_path, progress=False)
    assert resumed.seed == 9  # from the resume state
    assert resumed.start_iteration == 10 and resumed.iteration == 20
    assert resumed.history.losses == whole_run.history.losses[10:]
    assert resumed.final_weights.read_bytes() == whole_run.final_weights.read_bytes()


def test_real_resume_without_state_loses_only_momentum(tiny_dataset, whole_run, tmp_path):
    last = _interrupted_run(tiny_dataset, tmp_path)
    state_path(last).unlink()  # what darknet has: weights only
    at_10 = np.concatenate([a.ravel() for a in _conv_parameters(last, tiny_dataset.cfg)])
    resumed = train(tiny_dataset.data, tiny_dataset.cfg, last, backup_dir=tmp_path, seed=9, progress=False)
    # the same data and weights at iteration 10 give the same first loss; the updates then start
    # from zero momentum (0.9 of each update is momentum), so iterations 11-20 end elsewhere: the
    # reason for the resume state. Both runs still move the weights a comparable distance.
    assert resumed.history.losses[0] == whole_run.history.losses[10]
    assert resumed.final_weights.read_bytes() != whole_run.final_weights.read_bytes()
    whole, cut = (np.concatenate([a.ravel() for a in _conv_parameters(path, tiny_dataset.cfg)])
                  for path in (whole_run.final_weights, resumed.final_weights))
    moved = np.linalg.norm(whole - at_10)
    assert 0.1 * moved < np.linalg.norm(cut - at_10) < 2 * moved
    assert 0.05 * moved < np.linalg.norm(cut - whole) < moved


def test_real_compute_map_at_the_end(tiny_dataset, tmp_path):
    result = train(tiny_dataset.data, tiny_dataset.cfg, backup_dir=tmp_path, max_batches=2, seed=1,
                   progress=False, compute_map=True)
    assert [it for it, _ in result.history.maps] == [2]
    assert 0.0 <= result.best_map <= 1.0
    assert result.best_weights == tmp_path / "tiny_best.weights" and result.best_weights.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the mAP weights file is gone


def test_real_multiscale_training(tiny_dataset, tmp_path):
    # the tiny cfg with random=1 on its [yolo] layers (read from the last one)
    cfg = tmp_path / "tiny.cfg"
    dn.cfg.write_cfg(cfg, "yolov4-tiny", **TINY_CFG, random=True)
    sizes = []
    result = train(tiny_dataset.data, cfg, backup_dir=tmp_path, max_batches=1000, seed=2,
                   progress=False, callback=lambda p: sizes.append((p.width, p.height)) or p.iteration < 40)
    assert set(sizes) <= {(64, 64), (96, 96), (128, 128)} and len(set(sizes)) > 1
    assert all(math.isfinite(loss) for loss in result.history.losses)
    with dn.Network(cfg, result.last_weights) as net:  # saved weights load at the cfg size
        assert (net.width, net.height) == (64, 64) and net.seen == 40 * 4
