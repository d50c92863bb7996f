"""Time darknet_py.crowdhuman.prepare() on a synthesized CrowdHuman-layout dataset.

    PYTHONPATH=src python benchmarks/prepare.py [--images 2000] [--figures 15 25] [--budget 60]

Synthesizes `--images` images (90 % train, 10 % val) with many figures each (about
40,000 person entries by default) into a temporary folder, then times prepare() at
416x416 alone (synthesis is not counted). Exits 1 when it takes longer than --budget s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from darknet_py.crowdhuman import PrepareSummary, prepare, synthesize


def run(workdir: Path, images: int = 2000, figures: tuple[int, int] = (15, 25), seed: int = 0
        ) -> tuple[float, int, PrepareSummary]:
    """(seconds prepare() took, person entries synthesized, its summary)."""
    val = images // 10
    synthesis = synthesize(workdir / "crowdhuman", train=images - val, val=val, seed=seed, figures=figures,
                           figure_height=(0.12, 0.5), width_range=(400, 640))
    start = time.perf_counter()
    summary = prepare(workdir / "crowdhuman", workdir / "prepared", 416, 416)
    return time.perf_counter() - start, synthesis.persons, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--figures", type=int, nargs=2, default=(15, 25), metavar=("MIN", "MAX"))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds prepare() may take")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        seconds, persons, summary = run(Path(tmp), args.images, tuple(args.figures))
    print(f"synthesized {summary.images} images with {persons} person entries")
    print(summary.report())
    print(f"prepare(): {seconds:.2f} s ({summary.images / seconds:.0f} images/s), budget {args.budget:.0f} s")
    return 0 if seconds <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
