"""Fuzz target: darknet's dataset text files, the first byte choosing the reader: a YOLO label
file, an image list, a .data file (with the .names it names), a .names file."""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import darknet_py as dn  # noqa: E402
from darknet_py import crowdhuman, datafile  # noqa: E402

NAME = "datafiles"
TEXT = True
READERS = ("labels", "list", "data", "names")


def one_input(data: bytes) -> None:
    if not data:
        return
    reader, body = READERS[data[0] % len(READERS)], data[1:]
    path = _harness.scratch_file(f"fuzz.{reader}", body)
    try:
        if reader == "labels":
            rows = datafile.read_labels(path)
            assert rows.ndim == 2 and rows.shape[1] == 5 and rows.dtype.name == "float32"
            assert all(math.isfinite(v) for v in rows.ravel().tolist())
            assert all(c >= 0 and float(c).is_integer() for c in rows[:, 0].tolist())
        elif reader == "list":
            for image in datafile.read_image_list(path):
                datafile.label_path_for(image)
        elif reader == "data":
            config = datafile.read_data_file(path)
            assert config.classes >= 1 and len(config.names) == config.classes
        else:
            assert all(name and name == name.strip() for name in datafile.read_names(path))
    except dn.DarknetError:
        return


def seeds() -> list[bytes]:
    directory = Path(tempfile.mkdtemp(prefix="seeds-datafiles-"))
    root, out_dir = directory / "ch", directory / "out"
    crowdhuman.synthesize(root, train=4, val=2, seed=2)
    crowdhuman.prepare(root, out_dir, 64, 64)
    out = []
    for label in sorted((out_dir / crowdhuman.DATA_DIR).glob("*.txt"))[:4]:
        out.append(b"\x00" + label.read_bytes())
    out.append(b"\x01" + (out_dir / "train.txt").read_bytes())
    out.append(b"\x02" + (out_dir / "crowdhuman.data").read_bytes())
    out.append(b"\x02classes = 2\nnames = fuzz.names\n# comment\nbackup = b/\n")
    out.append(b"\x03" + (out_dir / "crowdhuman.names").read_bytes())
    return out


if __name__ == "__main__":
    _harness.main(sys.modules[__name__])
