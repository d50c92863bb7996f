"""`darknet-py`: darknet's command line, in-process, so tutorials translate one to one.

    darknet-py crowdhuman synthesize OUT [--train N] [--val N] [--seed S]
    darknet-py crowdhuman prepare ROOT OUT --size 416x416 [--arch yolov4] [--min-size 5] ...
    darknet-py detector calc_anchors DATA -num_of_clusters 9 -width 416 -height 416
    darknet-py detector train DATA CFG [WEIGHTS] [-map] [-clear] [-dont_show] [-distributed]
    darknet-py detector map DATA CFG WEIGHTS [-points 0] [-iou_thresh 0.5] [-thresh 0.25]
    darknet-py detector test DATA CFG WEIGHTS IMAGE [-thresh 0.25] [-ext_output]
    darknet-py detector demo DATA CFG WEIGHTS VIDEO|CAMERA [-out_filename out.mp4] [-thresh 0.25] [-dont_show]
    darknet-py partial CFG WEIGHTS OUT N
    darknet-py export CFG WEIGHTS [-o OUT.onnx] [--opset 17] [--batch 1] [--dynamic-batch] [--raw] [--fp16]
    darknet-py demo [--out DIR] [--quick]

darknet's single-dash flags (`-map`, `-thresh 0.25` ...) work as written, and also with two
dashes. Exit status: 0 on success, 1 when the command fails (one line `darknet-py: error:
...` on stderr; `--debug` prints the traceback as well), 2 on bad arguments, 130 on Ctrl-C,
141 (quietly) when the reader of standard output has gone, as after `| head`.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2

from . import crowdhuman
from .anchors import calc_anchors
from .datafile import read_data_file
from .demo import DEFAULT_OUT_DIR, DemoConfig, run_demo
from .detect import Detection
from .drawing import draw_detections
from .errors import DarknetError, DarknetIOError
from .evaluate import evaluate
from .images import read_image
from .names import PRECISIONS
from .network import THREADS_VARIABLE, Network, partial
from .train import TrainResult, train

PROG = "darknet-py"
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process SIGPIPE ended
PREPARE_ARCHS = ("yolov4", "yolov4-tiny", "yolov4-tiny-3l")
NO_CFG = "none"


# --------------------------------------------------------------------------- argument types


def size_type(text: str) -> tuple[int, int]:
    """`416x416` or `416` -> (width, height) in pixels."""
    parts = text.lower().split("x")
    try:
        width, height = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 416x416, got {text!r}") from None
    if len(parts) > 2 or width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 416x416, got {text!r}")
    return width, height


def _bounded(kind: type, low: float, high: float = float("inf")) -> Callable[[str], float]:
    """An argparse type: `kind(text)` within [low, high]."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not low <= value <= high:
            bounds = f">= {low:g}" if high == float("inf") else f"in [{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


fraction = _bounded(float, 0.0, 1.0)
positive_int = _bounded(int, 1)
non_negative_int = _bounded(int, 0)


# --------------------------------------------------------------------------- commands


def cmd_synthesize(args: argparse.Namespace) -> int:
    summary = crowdhuman.synthesize(args.out, train=args.train, val=args.val, seed=args.seed)
    print(f"{len(summary.train_ids)} train + {len(summary.val_ids)} val images, {summary.persons} persons, "
          f"{summary.masks} mask regions -> {summary.root}")
    print(f"next: {PROG} crowdhuman prepare {summary.root} OUT --size 416x416")
    return 0


def _cfg_options(args: argparse.Namespace) -> dict:
    """The cfg settings given on the command line (the others keep the cfg writer's defaults)."""
    chosen = dict(batch=args.batch, subdivisions=args.subdivisions, max_batches=args.max_batches)
    return {key: value for key, value in chosen.items() if value is not None}


def cmd_prepare(args: argparse.Namespace) -> int:
    width, height = args.size
    arch = None if args.arch == NO_CFG else args.arch
    summary = crowdhuman.prepare(args.root, args.out, width, height, min_size=args.min_size,
                                 honour_ignore=args.honour_ignore, include_vbox=args.vbox, limit=args.limit,
                                 absolute_paths=not args.relative_paths, link=args.link, write_cfg=arch,
                                 cfg_options=_cfg_options(args) if arch else None)
    print(summary.report())
    if summary.anchors is not None:
        print("\n".join(summary.anchors.darknet_lines(width)))
        print(f"next: {PROG} detector train {summary.data_file} {summary.cfg_file} -map")
    return 0


def cmd_calc_anchors(args: argparse.Namespace) -> int:
    result = calc_anchors(args.data, args.num_of_clusters, args.width, args.height, seed=args.seed)
    print(f" num_of_clusters = {args.num_of_clusters}, width = {args.width}, height = {args.height} ")
    print(f" {result.num_boxes} boxes, {result.iterations} iterations")
    print("\n".join(result.darknet_lines(args.width)))
    return 0


def _print_train_result(result: TrainResult) -> None:
    for label, path in (("final", result.final_weights), ("best", result.best_weights),
                        ("last", result.last_weights)):
        if path is not None:
            print(f"{label + ' weights:':14s} {path}")
    weights = result.final_weights or result.last_weights
    if weights is not None:
        print(f"{'chart:':14s} {weights.parent / 'chart.png'}")
    best = f", best mAP@0.50 {100 * result.best_map:.2f} %" if result.best_map is not None else ""
    print(f"{result.iterations} iterations (to {result.iteration}) in {result.seconds:.1f} s, "
          f"avg loss {result.avg_loss:.4f}{best}, seed {result.seed}")


def cmd_train(args: argparse.Namespace) -> int:
    # -dont_show is accepted for the tutorials' sake: no window is ever opened, chart.png is written.
    result = train(args.data, args.cfg, args.weights, compute_map=args.map, clear=args.clear,
                   max_batches=args.max_batches, seed=args.seed, backup_dir=args.backup,
                   distributed=args.distributed, distributed_timeout=args.distributed_timeout or None)
    if result.rank == 0:  # distributed: rank 0 holds the checkpoints; the others print nothing
        _print_train_result(result)
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    result = evaluate(args.data, args.cfg, args.weights, iou_thresh=args.iou_thresh, thresh=args.thresh,
                      points=args.points, precision=args.precision)
    print(result.report(), end="")
    return 0


def detection_line(det: Detection, ext_output: bool) -> str:
    """darknet's `head: 87%`, with -ext_output followed by the box in pixels."""
    line = f"{det.name}: {100 * det.confidence:.0f}%"
    if ext_output:
        line += (f"\t(left_x: {det.left:4.0f}   top_y: {det.top:4.0f}   "
                 f"width: {det.width:4.0f}   height: {det.height:4.0f})")
    return line


def cmd_test(args: argparse.Namespace) -> int:
    names = read_data_file(args.data).names
    image = read_image(args.image)
    with Network(args.cfg, args.weights, names=names, precision=args.precision) as net:
        began = time.perf_counter()
        detections = net.detect(image, thresh=args.thresh, nms=args.nms)
        milliseconds = 1000 * (time.perf_counter() - began)
    print(f"{args.image}: Predicted in {milliseconds:.3f} milli-seconds.")
    for det in detections:
        print(detection_line(det, args.ext_output))
    if not cv2.imwrite(str(args.out), draw_detections(image, detections)):
        raise DarknetIOError(f"{args.out}: cannot write image (unknown extension or unwritable folder)")
    print(f"written: {args.out}")
    return 0


def cmd_partial(args: argparse.Namespace) -> int:
    path = partial(args.cfg, args.weights, args.out, args.layers)
    print(f"written: {path} (the first {args.layers} layers of {args.weights}, seen = 0)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx

    out = args.output if args.output is not None else args.weights.with_suffix(".onnx")
    path = export_onnx(args.cfg, args.weights, out, opset=args.opset, batch=args.batch,
                       dynamic_batch=args.dynamic_batch, outputs="raw" if args.raw else "decoded", fp16=args.fp16,
                       names=args.names)
    print(f"written: {path}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from .video import annotate_video

    names = read_data_file(args.data).names
    source = int(args.video) if args.video.isdigit() else args.video
    with Network(args.cfg, args.weights, batch=args.batch, names=names, precision=args.precision) as net:
        def report(frame) -> None:  # noqa: ANN001 - a VideoFrame
            if args.ext_output or not args.quiet:
                found = ", ".join(f"{d.name}: {100 * d.confidence:.0f}%" for d in frame.detections) or "-"
                print(f"frame {frame.index}: {found}")

        summary = annotate_video(net, source, args.out_filename, thresh=args.thresh, nms=args.nms,
                                 max_frames=args.max_frames, on_frame=report)
    print(f"{summary.frames} frames, {summary.detections} detections, FPS: {summary.fps:.1f}")
    if summary.output is not None:
        print(f"written: {summary.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    config = DemoConfig.quick(args.out) if args.quick else DemoConfig(out_dir=Path(args.out))
    run_demo(config)
    return 0


# --------------------------------------------------------------------------- parser


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """A darknet option spelled `-name` (as darknet does) or `--name`."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name, **kwargs)


def _leaf(subparsers: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int],
          help_text: str, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, parents=[common])
    parser.set_defaults(handler=handler)
    return parser


def _add_crowdhuman(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = subparsers.add_parser("crowdhuman", help="CrowdHuman data: synthesize, prepare for darknet")
    commands = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = _leaf(commands, "synthesize", cmd_synthesize,
              "Write a small synthetic dataset in CrowdHuman's layout (Images/, annotation_*.odgt).", common)
    p.add_argument("out", type=Path, help="folder to write")
    p.add_argument("--train", type=non_negative_int, default=40, help="train images (default 40)")
    p.add_argument("--val", type=non_negative_int, default=10, help="val images (default 10)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="same seed, same files (default 0)")

    p = _leaf(commands, "prepare", cmd_prepare,
              "Turn a CrowdHuman folder into darknet labels, lists, .data, .names (and a cfg with anchors).",
              common)
    p.add_argument("root", type=Path, help="folder with Images/ and annotation_{train,val}.odgt")
    p.add_argument("out", type=Path, help="folder to write (never the dataset root)")
    p.add_argument("--size", type=size_type, default=(416, 416), metavar="WxH",
                   help="network input in pixels (default 416x416)")
    p.add_argument("--arch", choices=PREPARE_ARCHS + (NO_CFG,), default="yolov4",
                   help="cfg to write with k-means anchors, or 'none' (default yolov4)")
    p.add_argument("--min-size", type=_bounded(float, 0), default=5.0,
                   help="drop boxes under this many network pixels wide or high (default 5)")
    p.add_argument("--honour-ignore", action="store_true", help="drop boxes flagged ignore")
    p.add_argument("--vbox", action="store_true", help="add visible-body boxes as a third class")
    p.add_argument("--limit", type=non_negative_int, help="keep the first N images of each split")
    p.add_argument("--relative-paths", action="store_true", help="lists relative to OUT (default absolute)")
    p.add_argument("--link", choices=crowdhuman.LINK_MODES, default="symlink",
                   help="how OUT/data/ shows each image (default symlink)")
    p.add_argument("--batch", type=positive_int, help="cfg batch (default: the cfg writer's, 64)")
    p.add_argument("--subdivisions", type=positive_int, help="cfg subdivisions")
    p.add_argument("--max-batches", type=positive_int, help="cfg max_batches (steps at 80%% and 90%%)")


def _add_detector(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = subparsers.add_parser("detector", help="darknet's detector train|map|test|demo|calc_anchors")
    commands = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = _leaf(commands, "calc_anchors", cmd_calc_anchors,
              "k-means (1 - IoU) anchors over the train list's labels; prints avg IoU and anchors.", common)
    p.add_argument("data", type=Path, help=".data file")
    _flag(p, "num_of_clusters", type=positive_int, default=9, help="anchors to compute (default 9)")
    _flag(p, "width", type=positive_int, default=416, help="network width in pixels (default 416)")
    _flag(p, "height", type=positive_int, default=416, help="network height in pixels (default 416)")
    _flag(p, "show", action="store_true", help="accepted for darknet compatibility; the result is always printed")
    p.add_argument("--seed", type=non_negative_int, default=0, help="k-means seed (darknet uses the clock)")

    p = _leaf(commands, "train", cmd_train, "Train a detector; checkpoints and chart.png go to the backup folder.",
              common)
    p.add_argument("data", type=Path, help=".data file")
    p.add_argument("cfg", type=Path, help=".cfg file")
    p.add_argument("weights", type=Path, nargs="?", help="initial or resumed weights (e.g. yolov4.conv.137)")
    _flag(p, "map", action="store_true", help="compute mAP@0.5 on the valid list during training")
    _flag(p, "clear", action="store_true", help="restart the iteration count at 0 whatever the weights say")
    _flag(p, "dont_show", action="store_true", help="accepted for darknet compatibility; no window is opened")
    _flag(p, "distributed", action="store_true",
          help="one rank of an MPI job (mpirun -np N darknet-py detector train ...): the ranks share every batch "
               "(needs darknet_py[mpi])")
    _flag(p, "distributed_timeout", type=_bounded(float, 0), default=600.0, metavar="SECONDS",
          help="with -distributed: abort the job when a rank waits this long for the others (0: never; default 600)")
    p.add_argument("--max-batches", type=positive_int, help="override the cfg's max_batches")
    p.add_argument("--seed", type=non_negative_int, help="data and augmentation seed (default: random, printed)")
    p.add_argument("--backup", type=Path, help="checkpoint folder (default: the .data's backup)")

    p = _leaf(commands, "map", cmd_map, "mAP of weights on the .data's valid list (darknet's report).", common)
    p.add_argument("data", type=Path, help=".data file")
    p.add_argument("cfg", type=Path, help=".cfg file")
    p.add_argument("weights", type=Path, help=".weights file")
    _flag(p, "points", type=non_negative_int, default=0, help="0: area under curve; 11 or 101: VOC/COCO points")
    _flag(p, "iou_thresh", type=fraction, default=0.5, help="IoU for a match (default 0.5)")
    _flag(p, "thresh", type=fraction, default=0.25, help="confidence for precision/recall (default 0.25)")
    _add_precision(p)

    p = _leaf(commands, "test", cmd_test, "Detect on one image: print the detections, write the image with boxes.",
              common)
    p.add_argument("data", type=Path, help=".data file (for the class names)")
    p.add_argument("cfg", type=Path, help=".cfg file")
    p.add_argument("weights", type=Path, help=".weights file")
    p.add_argument("image", type=Path, help="image file")
    _flag(p, "thresh", type=fraction, default=0.25, help="confidence threshold (default 0.25)")
    _flag(p, "nms", type=fraction, default=0.45, help="NMS IoU threshold (default 0.45)")
    _flag(p, "ext_output", action="store_true", help="print each box's position and size in pixels")
    _flag(p, "dont_show", action="store_true", help="accepted for darknet compatibility; no window is opened")
    p.add_argument("--out", type=Path, default=Path("predictions.jpg"),
                   help="image with boxes to write (default predictions.jpg, as darknet)")
    _add_precision(p)

    p = _leaf(commands, "demo", cmd_video,
              "Detect on a video file or camera: print each frame's detections and FPS, optionally write "
              "the annotated video.", common)
    p.add_argument("data", type=Path, help=".data file (for the class names)")
    p.add_argument("cfg", type=Path, help=".cfg file")
    p.add_argument("weights", type=Path, help=".weights file")
    p.add_argument("video", help="video file, or a camera index such as 0")
    _flag(p, "out_filename", type=Path, help="write the annotated video here (.mp4, .avi, .mkv, .mov)")
    _flag(p, "thresh", type=fraction, default=0.25, help="confidence threshold (default 0.25)")
    _flag(p, "nms", type=fraction, default=0.45, help="NMS IoU threshold (default 0.45)")
    _flag(p, "ext_output", action="store_true", help="print every frame's detections (also without it, "
                                                     "unless --quiet)")
    _flag(p, "dont_show", action="store_true", help="accepted for darknet compatibility; no window is opened")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--batch", type=positive_int, default=4, help="frames per engine call (default 4)")
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames (cameras)")
    _add_precision(p)


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="inference precision: fp32 (default), or bf16 on CPUs with AVX512-BF16 (the "
                        "convolutions in bf16, except 3x3 stride-1 layers on the Winograd path)")


def _add_partial(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _leaf(subparsers, "partial", cmd_partial,
              "darknet's partial: the first N layers' weights (e.g. yolov4.conv.137), seen reset to 0.", common)
    p.add_argument("cfg", type=Path, help=".cfg file the weights belong to")
    p.add_argument("weights", type=Path, help=".weights file")
    p.add_argument("out", type=Path, help="the partial .weights to write")
    p.add_argument("layers", type=non_negative_int, help="how many layers to keep (N)")


def _add_export(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _leaf(subparsers, "export", cmd_export,
              "Write the network as an ONNX model (ONNX Runtime, OpenVINO, TensorRT, OpenCV 5).", common)
    p.add_argument("cfg", type=Path, help=".cfg file")
    p.add_argument("weights", type=Path, help=".weights file")
    p.add_argument("-o", "--output", type=Path, help="the .onnx to write (default: beside WEIGHTS, same name)")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset, 13 or newer (default 17)")
    p.add_argument("--batch", type=positive_int, default=1, help="fixed batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension instead")
    p.add_argument("--raw", action="store_true",
                   help="output each [yolo] head's input instead of decoded boxes + scores")
    p.add_argument("--fp16", action="store_true", help="float16 weights and computation (float32 in and out)")
    p.add_argument("--names", type=Path, help=".names file whose class names go into the model's metadata")


def _add_demo(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = _leaf(subparsers, "demo", cmd_demo,
              "Synthesize data, train a small detector on the CPU, evaluate it and draw its predictions.", common)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help=f"output folder (default ./{DEFAULT_OUT_DIR})")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the pipeline in seconds")


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the command; SUPPRESS keeps a later parser from
    # resetting what an earlier one set.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the full traceback of an error")
    common.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS, metavar="N",
                        help="the engine's CPU threads (default: DARKNET_PY_THREADS, else every CPU)")
    parser = argparse.ArgumentParser(prog=PROG, parents=[common], description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_crowdhuman(subparsers, common)
    _add_detector(subparsers, common)
    _add_partial(subparsers, common)
    _add_export(subparsers, common)
    _add_demo(subparsers, common)
    return parser


# --------------------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    """The error as one readable line: darknet_py's own messages as they are, other
    exceptions prefixed with their type (a bare `[Errno 2] ...` would not say what failed)."""
    text = " ".join(str(exc).split("\n")).strip()
    if isinstance(exc, DarknetError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' hook
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (a BrokenPipeError from any
    other pipe is a real failure). If so, the rest of the output goes to /dev/null, so that the
    flush at exit raises nothing more."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # stdout replaced in-process
        return False
    if not hasattr(select, "poll"):  # Windows: no way to ask
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):  # a pipe without reader: POLLERR
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or bad arguments (2): argparse has printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False)
    if hasattr(args, "threads"):  # every network the command opens (training, mAP, detection)
        os.environ[THREADS_VARIABLE] = str(args.threads)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning  # one line, not Python's source excerpt
            status = args.handler(args)
            sys.stdout.flush()  # here, not at exit: a reader that has gone (`| head`) shows now
            return status
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a command-line tool reports every failure the same way
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            return EXIT_BROKEN_PIPE
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
