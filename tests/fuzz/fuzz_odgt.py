"""Fuzz target: `crowdhuman.parse_odgt` on fuzzed JSON lines, and the label lines prepare() makes
from each record it returns."""
from __future__ import annotations

import math
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import darknet_py as dn  # noqa: E402
from darknet_py import crowdhuman  # noqa: E402

NAME = "odgt"
TEXT = True
RULES = crowdhuman._Rules(width=416, height=416, min_size=5, honour_ignore=True, include_vbox=True)


def one_input(data: bytes) -> None:
    path = _harness.scratch_file("fuzz.odgt", data)
    try:
        records = list(crowdhuman.parse_odgt(path))
    except dn.DarknetError:
        return
    kept, dropped, sizes = Counter(), Counter(), []
    for record in records:
        assert isinstance(record.id, str) and record.id and "/" not in record.id
        lines = crowdhuman._label_lines(record, 640, 480, RULES, kept, dropped, sizes)
        for line in lines:
            fields = line.split()
            assert len(fields) == 5 and all(math.isfinite(float(v)) for v in fields), line


def seeds() -> list[bytes]:
    directory = Path(tempfile.mkdtemp(prefix="seeds-odgt-"))
    crowdhuman.synthesize(directory, train=6, val=2, seed=1)
    out = [(directory / name).read_bytes() for name in ("annotation_train.odgt", "annotation_val.odgt")]
    out += [line + b"\n" for line in out[0].splitlines()[:4]]
    return out


if __name__ == "__main__":
    _harness.main(sys.modules[__name__])
