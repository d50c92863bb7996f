"""Train a YOLOv4 person/head detector on the real CrowdHuman dataset.

    python examples/train_crowdhuman.py /data/CrowdHuman --work crowdhuman_yolo \
        [--arch yolov4] [--size 416x416] [--weights yolov4.conv.137]

ROOT holds `Images/<ID>.jpg` (the unpacked CrowdHuman_train0*.zip and CrowdHuman_val.zip)
and `annotation_train.odgt`, `annotation_val.odgt`. The defaults are the public tutorial's
416x416 Colab settings: batch 24, subdivisions 8, max_batches 4000, steps at 75 % and 90 %,
burn_in 1000, learning_rate 0.001, mosaic on. Run it again to resume from
`WORK/backup/<cfg>_last.weights` (written every 100 iterations and on Ctrl-C); `--restart`
starts over. Every iteration is appended to `WORK/train_log.csv`; the best weights are
evaluated at the end.
"""
import argparse
import sys
from pathlib import Path

import darknet_py as dn
from darknet_py.cli import size_type
from darknet_py.demo import TrainLog

#: The tutorial froze the backbone of the full yolov4 for its first 800 iterations when
#: starting from the COCO-trained `yolov4.conv.137` (a random backbone must not be frozen).
PRETRAINED_STOPBACKWARD = 800


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="CrowdHuman folder (Images/, annotation_*.odgt)")
    parser.add_argument("--work", type=Path, default=Path("crowdhuman_yolo"),
                        help="folder for labels, lists, cfg, checkpoints and logs (default ./crowdhuman_yolo)")
    parser.add_argument("--arch", choices=("yolov4", "yolov4-tiny", "yolov4-tiny-3l"), default="yolov4")
    parser.add_argument("--size", type=size_type, default=(416, 416), metavar="WxH",
                        help="network input in pixels, multiples of 32 (default 416x416)")
    parser.add_argument("--weights", type=Path, help="pretrained start, e.g. yolov4.conv.137")
    parser.add_argument("--batch", type=int, default=24, help="images per iteration (default 24)")
    parser.add_argument("--subdivisions", type=int, default=8, help="forward passes per batch (default 8)")
    parser.add_argument("--max-batches", type=int, default=4000, help="iterations (default 4000)")
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--burn-in", type=int, default=1000, help="iterations of learning-rate warm-up")
    parser.add_argument("--no-mosaic", action="store_true", help="turn off mosaic augmentation")
    parser.add_argument("--limit", type=int, help="use only the first N images of each split (a quick try)")
    parser.add_argument("--no-map", action="store_true", help="skip mAP during training")
    parser.add_argument("--restart", action="store_true", help="ignore an earlier run's _last.weights")
    parser.add_argument("--seed", type=int, help="data seed (default: random, or the resumed run's)")
    return parser.parse_args(argv)


def cfg_options(args) -> dict:
    """The [net] settings of the cfg prepare() writes (steps at 75 % and 90 %, as the tutorial)."""
    options = dict(batch=args.batch, subdivisions=args.subdivisions, max_batches=args.max_batches,
                   steps=(args.max_batches * 3 // 4, args.max_batches * 9 // 10),
                   learning_rate=args.learning_rate, burn_in=args.burn_in, mosaic=not args.no_mosaic)
    if args.arch == "yolov4" and args.weights is not None:
        options["stopbackward"] = PRETRAINED_STOPBACKWARD
    return options


def run(args) -> None:
    width, height = args.size
    summary = dn.crowdhuman.prepare(args.root, args.work, width, height, write_cfg=args.arch,
                                    cfg_options=cfg_options(args), limit=args.limit)
    print(summary.report())
    print("\n".join(summary.anchors.darknet_lines(width)))

    last = args.work / "backup" / f"{summary.cfg_file.stem}_last.weights"
    resuming = last.is_file() and not args.restart
    weights = last if resuming else args.weights
    print(f"resuming from {last}" if resuming else f"starting from {weights or 'random weights'}")
    with TrainLog(args.work / "train_log.csv", append=resuming) as log:
        result = dn.train(summary.data_file, summary.cfg_file, weights, callback=log,
                          compute_map=not args.no_map, seed=args.seed)
    print(f"trained to iteration {result.iteration}; chart: {args.work / 'backup' / 'chart.png'}")

    best = result.best_weights or result.final_weights or result.last_weights
    print(f"evaluating {best}")
    print(dn.evaluate(summary.data_file, summary.cfg_file, best).report())


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except dn.DarknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume from {args.work / 'backup'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
