"""The demo: from nothing to a trained detector and a picture of its predictions, on a CPU.

run_demo() synthesizes the built-in CrowdHuman-format dataset, prepares it for darknet
(labels, lists, .data, .names, anchors, a small yolov4-tiny-3l cfg), trains with a progress
bar while a callback logs every iteration to a CSV file, evaluates mAP@0.5, detects on
held-out images and writes `predictions.jpg` and `chart.png`. Everything goes under one
output folder; nothing is written to the current directory.

    darknet-py demo [--out DIR] [--quick]
"""
from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO

import cv2

from ._typing import PathLike
from . import crowdhuman
from .datafile import read_image_list
from .images import read_image
from .drawing import draw_detections, image_grid
from .errors import DarknetIOError, StateError
from .evaluate import MapResult, evaluate
from .network import Network
from .train import TrainProgress, TrainResult, train

__all__ = ["DemoConfig", "DemoResult", "TrainLog", "run_demo", "write_predictions"]


DEFAULT_OUT_DIR = Path("darknet_py_demo")
LOG_FIELDS = ("iteration", "loss", "avg_loss", "learning_rate", "seconds", "images", "map")


def _recipe() -> dict[str, Any]:
    """cfg settings of the full demo: ~600 iterations of batch 16 at 160x160 fit 10 CPU minutes.

    yolov4-tiny-3l rather than yolov4-tiny: the published yolov4-tiny masks (3,4,5 and 1,2,3)
    leave the smallest anchor unused, so the smallest heads are never trained; with
    yolov4-tiny the same recipe ends near mAP 0.77 (head AP 0.68), with -3l near 0.93.
    """
    return dict(batch=16, subdivisions=1, max_batches=600, learning_rate=0.006, burn_in=100,
                steps=(480, 540), mosaic=False)


@dataclass
class DemoConfig:
    """Every setting of the demo.

    train_images / val_images / data_seed: the synthesized dataset (synthesize_options go to
    crowdhuman.synthesize as they are, e.g. width_range); width x height: the network input in
    pixels; cfg_options: passed to the cfg writer (batch, max_batches, learning_rate ...);
    train_seed: train()'s seed; preview_images: held-out images shown in predictions.jpg;
    thresh: their detection threshold (0..1); gpus: train()'s gpus (a CUDA build; None = CPU).
    """

    out_dir: Path = DEFAULT_OUT_DIR
    train_images: int = 400
    val_images: int = 80
    data_seed: int = 0
    synthesize_options: dict[str, Any] = field(default_factory=dict)
    width: int = 160
    height: int = 160
    arch: str = "yolov4-tiny-3l"
    cfg_options: dict[str, Any] = field(default_factory=_recipe)
    train_seed: int = 1
    compute_map: bool = True
    workers: int = 2
    preview_images: int = 6
    thresh: float = 0.25
    gpus: Optional[list[int]] = None   # train()'s gpus: [0] trains on CUDA device 0 (a CUDA build)

    @classmethod
    def quick(cls, out_dir: PathLike = DEFAULT_OUT_DIR) -> "DemoConfig":
        """Tiny settings that run the whole pipeline in seconds (for tests; the mAP means nothing)."""
        return cls(out_dir=Path(out_dir), train_images=16, val_images=8,
                   synthesize_options=dict(width_range=(96, 192)), width=64, height=64,
                   cfg_options=dict(batch=2, subdivisions=1, max_batches=10, learning_rate=0.004, burn_in=5,
                                    steps=(8, 9), mosaic=False),
                   preview_images=4)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put everything, and how well the detector did."""

    out_dir: Path
    dataset_root: Path       # the synthesized CrowdHuman-format folder
    data_file: Path          # darknet's .data of the prepared dataset
    cfg_file: Path
    weights: Path            # the weights evaluated and used for predictions
    train_log: Path          # CSV, one row per iteration
    chart: Path              # loss and mAP against iterations
    predictions: Path        # held-out images with their detections drawn
    map_report: Path         # darknet's `detector map` text
    map: MapResult
    train_result: TrainResult
    seconds: float           # wall time of the whole demo

    def outputs(self) -> list[tuple[str, Path]]:
        """(description, path) of every output, in the order they were made."""
        return [("CrowdHuman-format dataset", self.dataset_root), ("darknet .data", self.data_file),
                ("cfg", self.cfg_file), ("weights", self.weights), ("training log (CSV)", self.train_log),
                ("chart (loss, mAP)", self.chart), ("mAP report", self.map_report),
                ("predictions", self.predictions)]


class TrainLog:
    """train()'s callback: writes one CSV row per iteration to `path` (flushed, so the file
    can be followed while training runs). A context manager. The file is replaced on open,
    or with append=True extended (a resumed run continues its log; the header is written
    only into an empty file)."""

    def __init__(self, path: Path, *, append: bool = False):
        self.path = Path(path)
        self.append = append
        self._file: Optional[TextIO] = None
        self._writer: Any = None

    def __enter__(self) -> "TrainLog":
        try:
            self._file = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise DarknetIOError(f"{self.path}: cannot write: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        if self._file.tell() == 0:
            self._writer.writerow(LOG_FIELDS)
        return self

    def __call__(self, p: TrainProgress) -> None:
        if self._file is None:
            raise StateError(f"{self.path}: TrainLog used outside its `with` block")
        self._writer.writerow([p.iteration, f"{p.loss:.6f}", f"{p.avg_loss:.6f}", f"{p.learning_rate:.8f}",
                               f"{p.seconds:.3f}", p.images, "" if p.map is None else f"{p.map:.6f}"])
        self._file.flush()

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _chosen_weights(result: TrainResult) -> Path:
    """The best-mAP checkpoint when there is one (darknet users ship `_best`), else the latest."""
    for path in (result.best_weights, result.final_weights, result.last_weights):
        if path is not None:
            return path
    raise StateError("training wrote no weights")


def write_predictions(cfg: Path, weights: Path, names: list[str], images: list[Path], path: Path,
                      thresh: float) -> Path:
    """Detect on `images` with one Network and write them, boxes drawn, as one grid image."""
    drawn, captions = [], []
    with Network(cfg, weights, names=names) as net:
        for image_path in images:
            image = read_image(image_path)
            detections = net.detect(image, thresh=thresh)
            drawn.append(draw_detections(image, detections))
            captions.append(f"{len(detections)} detection{'' if len(detections) == 1 else 's'}")
    if not cv2.imwrite(str(path), image_grid(drawn, captions=captions)):
        raise DarknetIOError(f"{path}: cannot write image")
    return path


def run_demo(config: Optional[DemoConfig] = None, *, progress: bool = True,
             out: Optional[TextIO] = None) -> DemoResult:
    """Run the whole demo with `config` (default: the full CPU recipe); steps and the final
    list of outputs are printed to `out` (default: the current sys.stdout), training progress
    to stderr when `progress`."""
    config = config or DemoConfig()
    out = out or sys.stdout
    began = time.perf_counter()
    out_dir = Path(config.out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)

    _say(out, f"[1/6] synthesizing {config.train_images} + {config.val_images} CrowdHuman-format images")
    synthesized = crowdhuman.synthesize(out_dir / "crowdhuman", train=config.train_images, val=config.val_images,
                                        seed=config.data_seed, **config.synthesize_options)

    _say(out, f"[2/6] preparing labels, lists, anchors and a {config.arch} cfg at {config.width}x{config.height}")
    summary = crowdhuman.prepare(synthesized.root, out_dir / "dataset", config.width, config.height,
                                 write_cfg=config.arch, cfg_options=config.cfg_options, progress=progress)
    _say(out, summary.report())
    _say(out, "\n".join(summary.anchors.darknet_lines(config.width)))

    _say(out, f"[3/6] training (log: {out_dir / 'train_log.csv'})")
    with TrainLog(out_dir / "train_log.csv") as log:
        result = train(summary.data_file, summary.cfg_file, callback=log, compute_map=config.compute_map,
                       seed=config.train_seed, progress=progress, workers=config.workers, gpus=config.gpus)
    weights = _chosen_weights(result)
    chart = shutil.copyfile(weights.parent / "chart.png", out_dir / "chart.png")

    _say(out, f"[4/6] evaluating {weights.name} on {summary.val_images} held-out images")
    map_result = evaluate(summary.data_file, summary.cfg_file, weights,
                          progress=progress)
    _say(out, map_result.report())
    map_report = out_dir / "map.txt"
    map_report.write_text(map_result.report(), encoding="utf-8")

    _say(out, "[5/6] detecting on held-out images")
    held_out = read_image_list(summary.out_dir / "test.txt")[:config.preview_images]
    predictions = write_predictions(summary.cfg_file, weights, summary.names, held_out,
                                    out_dir / "predictions.jpg", config.thresh)

    demo = DemoResult(out_dir, synthesized.root, summary.data_file, summary.cfg_file, weights,
                      log.path, Path(chart), predictions, map_report, map_result, result,
                      time.perf_counter() - began)
    _say(out, f"[6/6] done in {demo.seconds:.0f} s: {result.iterations} iterations, "
              f"mAP@0.50 = {100 * map_result.map:.2f} %")
    for description, path in demo.outputs():
        _say(out, f"  {description + ':':28s} {path}")
    return demo
