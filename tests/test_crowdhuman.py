"""CrowdHuman .odgt parsing, label conversion rules, output files and the synthetic dataset."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py.crowdhuman import GtBox, parse_odgt, prepare, synthesize
from darknet_py.datafile import label_path_for, read_data_file, read_image_list, read_labels
from darknet_py.errors import DarknetIOError, DataError
from darknet_py.imagesize import image_size

ID = "273271,c9db000d5146c15"
LABEL_LINE = re.compile(r"^\d+ \d\.\d{6} \d\.\d{6} \d\.\d{6} \d\.\d{6}$")


def person(hbox=None, fbox=None, vbox=None, head_ignore=0, ignore=0, tag="person"):
    entry = {"tag": tag, "head_attr": {"ignore": head_ignore, "occ": 0, "unsure": 0},
             "extra": {"box_id": 0, "occ": 0, "ignore": ignore}}
    for name, box in (("hbox", hbox), ("fbox", fbox), ("vbox", vbox)):
        if box is not None:
            entry[name] = box
    return entry


def make_root(tmp_path: Path, train: dict, val: dict | None = None, sizes: dict | None = None) -> Path:
    """A CrowdHuman-layout folder: {ID: gtboxes} per split; images 400x200 unless `sizes` says."""
    root = tmp_path / "root"
    (root / "Images").mkdir(parents=True)
    val = {"val,0001": []} if val is None else val
    sizes = sizes or {}
    for split, records in (("train", train), ("val", val)):
        with open(root / f"annotation_{split}.odgt", "w") as f:
            for image_id, gtboxes in records.items():
                f.write(json.dumps({"ID": image_id, "gtboxes": gtboxes}) + "\n")
                w, h = sizes.get(image_id, (400, 200))
                cv2.imwrite(str(root / "Images" / f"{image_id}.jpg"), np.full((h, w, 3), 128, np.uint8))
    return root


def labels_of(out: Path, image_id: str) -> list[str]:
    return (out / "data" / f"{image_id}.txt").read_text().splitlines()


def parse_line(line: str) -> tuple[int, list[float]]:
    fields = line.split()
    return int(fields[0]), [float(v) for v in fields[1:]]


def write_odgt(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "a.odgt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


# --------------------------------------------------------------------------- parse_odgt


def test_parse_odgt_gives_typed_records_and_tolerates_missing_keys(tmp_path):
    path = write_odgt(tmp_path,
                      json.dumps({"ID": ID, "gtboxes": [person([1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], 1, 0),
                                                        {"tag": "mask", "fbox": [0, 0, 5, 5], "vbox": [0, 0, 5, 5]},
                                                        {"hbox": [1.5, -2, 3, 4]}]}),
                      "",
                      json.dumps({"ID": "b,2"}))
    first, second = list(parse_odgt(path))
    assert first.id == ID and first.line == 1 and second.line == 3
    full, mask, bare = first.gtboxes
    assert full.hbox == (1.0, 2.0, 3.0, 4.0) and full.fbox == (5.0, 6.0, 7.0, 8.0) and full.vbox == (9, 10, 11, 12)
    assert full.head_ignored and not full.body_ignored and not full.is_mask
    assert mask.is_mask and mask.hbox is None and mask.fbox == (0, 0, 5, 5)
    assert bare == GtBox(tag=None, hbox=(1.5, -2.0, 3.0, 4.0))
    assert not bare.head_ignored and not bare.body_ignored
    assert second.gtboxes == ()


@pytest.mark.parametrize("line, message", [
    ('{"ID": "a", "gtboxes": [', r"a\.odgt:2: invalid JSON"),
    (json.dumps({"ID": "a", "gtboxes": [{"hbox": [1, 2, 3]}]}), r"a\.odgt:2: field 'gtboxes\[0\]'\.hbox: .*4 numbers.*got 3"),
    (json.dumps({"ID": "a", "gtboxes": [{}, {"fbox": [1, "2", 3, 4]}]}), r"a\.odgt:2: field 'gtboxes\[1\]'\.fbox: .*'2'"),
    (json.dumps({"gtboxes": []}), r"a\.odgt:2: field 'ID' is missing"),
    (json.dumps({"ID": 17}), r"a\.odgt:2: field 'ID'"),
    (json.dumps({"ID": "../x"}), r"a\.odgt:2: field 'ID'.*file name"),
    (json.dumps({"ID": "a", "gtboxes": {}}), r"a\.odgt:2: field 'gtboxes'"),
    (json.dumps({"ID": "a", "gtboxes": [{"extra": {"ignore": "yes"}}]}), r"a\.odgt:2: .*extra\.ignore"),
    (json.dumps({"ID": "a", "gtboxes": [{"hbox": [1, 2, 3, float("nan")]}]}), r"a\.odgt:2: .*hbox"),
    ("[1, 2]", r"a\.odgt:2: expected a JSON object"),
])
def test_parse_odgt_names_file_line_and_field_of_a_bad_record(tmp_path, line, message):
    path = write_odgt(tmp_path, json.dumps({"ID": "ok"}), line)
    with pytest.raises(DataError, match=message):
        list(parse_odgt(path))


def test_parse_odgt_missing_file(tmp_path):
    with pytest.raises(DarknetIOError, match="not found"):
        list(parse_odgt(tmp_path / "nope.odgt"))


# --------------------------------------------------------------------------- label rules


def test_class_mapping_and_six_decimal_relative_lines(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[100, 50, 20, 30], fbox=[80, 40, 60, 150], vbox=[80, 40, 60, 100])]})
    summary = prepare(root, tmp_path / "out")
    lines = labels_of(tmp_path / "out", ID)
    assert lines == ["0 0.275000 0.325000 0.050000 0.150000", "1 0.275000 0.575000 0.150000 0.750000"]
    assert all(LABEL_LINE.match(line) for line in lines)
    assert summary.names == ["head", "person"]
    assert summary.boxes == {"head": 1, "person": 1}


def test_mask_entries_are_skipped_and_counted(tmp_path):
    root = make_root(tmp_path, {ID: [{"tag": "mask", "fbox": [0, 0, 100, 100], "vbox": [0, 0, 50, 50]},
                                     person(hbox=[10, 10, 20, 20], tag="mask")]})
    summary = prepare(root, tmp_path / "out")
    assert labels_of(tmp_path / "out", ID) == []
    assert summary.dropped["mask"] == 2 and summary.boxes == {"head": 0, "person": 0}


def test_boxes_are_clipped_to_their_true_intersection_with_the_image(tmp_path):
    root = make_root(tmp_path, {ID: [
        person(fbox=[-40, -20, 100, 120]),     # negative x and y: keeps [0, 60] x [0, 100]
        person(fbox=[350, 150, 100, 100]),     # beyond right and bottom: [350, 400] x [150, 200]
        person(fbox=[500, 10, 50, 50]),        # wholly right of the image
        person(fbox=[10, -80, 50, 50]),        # wholly above it
        person(hbox=[10, 10, 0, 40]),          # no area at all
    ]})
    summary = prepare(root, tmp_path / "out")
    boxes = [parse_line(line)[1] for line in labels_of(tmp_path / "out", ID)]
    np.testing.assert_allclose(boxes, [[30 / 400, 50 / 200, 60 / 400, 100 / 200],
                                       [375 / 400, 175 / 200, 50 / 400, 50 / 200]], atol=1e-6)
    assert summary.dropped["outside"] == 3
    for box in boxes:  # nothing leaves the image
        assert 0 <= box[0] - box[2] / 2 and box[0] + box[2] / 2 <= 1 + 1e-6


def test_minimum_size_is_in_network_pixels(tmp_path):
    # Image 400x200. A box 12 px wide, 40 px high is 4.99 network pixels wide at 166 and
    # 12.48 at 416; one 50 x 4 px is 8.32 px high at 416 but 4.98 at 249.
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 12, 40]), person(fbox=[100, 100, 50, 4])]})
    at_416 = prepare(root, tmp_path / "a", 416, 416)
    assert at_416.boxes == {"head": 1, "person": 1} and at_416.dropped["too_small"] == 0
    small = prepare(root, tmp_path / "b", 166, 249)
    assert small.boxes == {"head": 0, "person": 0} and small.dropped["too_small"] == 2
    assert labels_of(tmp_path / "b", ID) == []
    relaxed = prepare(root, tmp_path / "c", 166, 249, min_size=4)
    assert relaxed.boxes == {"head": 1, "person": 1}


def test_clipping_happens_before_the_size_test(tmp_path):
    # 100 px wide but only 3 px inside the image: too small at 416 (3.1 px).
    root = make_root(tmp_path, {ID: [person(fbox=[-97, 0, 100, 100])]})
    assert prepare(root, tmp_path / "out").dropped["too_small"] == 1


def test_ignore_flags_only_with_honour_ignore(tmp_path):
    entries = [person(hbox=[10, 10, 20, 20], fbox=[5, 5, 60, 150], head_ignore=1),
               person(hbox=[200, 10, 20, 20], fbox=[190, 5, 60, 150], ignore=1)]
    root = make_root(tmp_path, {ID: entries})
    plain = prepare(root, tmp_path / "a")
    assert plain.boxes == {"head": 2, "person": 2} and plain.dropped["ignored"] == 0
    honoured = prepare(root, tmp_path / "b", honour_ignore=True)
    assert honoured.boxes == {"head": 1, "person": 1} and honoured.dropped["ignored"] == 2
    classes = sorted(parse_line(line) for line in labels_of(tmp_path / "b", ID))
    assert classes[0][0] == 0 and classes[0][1][0] == pytest.approx(210 / 400)   # the second head
    assert classes[1][0] == 1 and classes[1][1][0] == pytest.approx(35 / 400)    # the first body


def test_vbox_option_adds_a_third_class(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20], fbox=[0, 0, 100, 200], vbox=[0, 0, 100, 100])]})
    summary = prepare(root, tmp_path / "out", include_vbox=True)
    out = tmp_path / "out"
    assert summary.names == ["head", "person", "vbox"] and summary.boxes["vbox"] == 1
    assert labels_of(out, ID)[2] == "2 0.125000 0.250000 0.250000 0.500000"
    assert (out / "crowdhuman.names").read_text() == "head\nperson\nvbox\n"
    assert read_data_file(out / "crowdhuman.data").classes == 3
    without = prepare(root, tmp_path / "plain")
    assert "vbox" not in without.boxes and len(labels_of(tmp_path / "plain", ID)) == 2


# --------------------------------------------------------------------------- output files


def test_lists_names_and_data_file(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20])], "1,empty": []},
                     {"9,v": [person(fbox=[0, 0, 50, 100])]})
    out = tmp_path / "out"
    summary = prepare(root, out)
    assert (summary.train_images, summary.val_images, summary.images) == (2, 1, 3)
    assert (out / "train.txt").read_text().splitlines() == [str(out / "data" / f"{ID}.jpg"),
                                                           str(out / "data" / "1,empty.jpg")]
    assert (out / "test.txt").read_text().splitlines() == [str(out / "data" / "9,v.jpg")]
    assert (out / "crowdhuman.names").read_text() == "head\nperson\n"
    assert (out / "crowdhuman.data").read_text() == (
        f"classes = 2\ntrain = {out}/train.txt\nvalid = {out}/test.txt\n"
        f"names = {out}/crowdhuman.names\nbackup = {out}/backup/\n")
    assert (out / "backup").is_dir()
    # An image without a kept box is listed with an empty label file.
    assert (out / "data" / "1,empty.txt").read_text() == ""
    # darknet's own rule finds the labels beside the linked images.
    config = read_data_file(out / "crowdhuman.data")
    images = read_image_list(config.train)
    assert read_labels(label_path_for(images[0])).shape == (1, 5)
    assert os.path.samefile(images[0], root / "Images" / f"{ID}.jpg")
    assert not any(p.name not in ("Images", "annotation_train.odgt", "annotation_val.odgt") for p in root.iterdir())


def test_relative_paths_resolve_from_out_dir(tmp_path, monkeypatch):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20])]})
    out = tmp_path / "out"
    prepare(root, out, absolute_paths=False)
    assert (out / "train.txt").read_text() == f"data/{ID}.jpg\n"
    assert "train = train.txt\n" in (out / "crowdhuman.data").read_text()
    monkeypatch.chdir(out)  # darknet resolves against the current directory
    image = read_image_list(read_data_file("crowdhuman.data").train)[0]
    assert image.exists() and read_labels(label_path_for(image)).shape == (1, 5)


@pytest.mark.parametrize("mode", ["symlink", "hardlink", "copy"])
def test_link_modes(tmp_path, mode):
    root = make_root(tmp_path, {ID: []})
    prepare(root, tmp_path / "out", link=mode)
    target = tmp_path / "out" / "data" / f"{ID}.jpg"
    assert target.is_symlink() == (mode == "symlink")
    assert target.read_bytes() == (root / "Images" / f"{ID}.jpg").read_bytes()


def snapshot(directory: Path) -> dict:
    state = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            state[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
        else:
            state[str(path)] = "dir"
    return state


def test_prepare_is_idempotent(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20], fbox=[5, 5, 60, 150])], "2,b": []})
    out = tmp_path / "out"
    first = prepare(root, out)
    before = snapshot(out)
    second = prepare(root, out)
    assert snapshot(out) == before  # same content, and unchanged files are not even rewritten
    assert first == second
    assert not [p for p in out.rglob("*.tmp")]


def test_changed_annotations_rewrite_only_own_files(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20])]})
    out = tmp_path / "out"
    prepare(root, out)
    with open(root / "annotation_train.odgt", "w") as f:
        f.write(json.dumps({"ID": ID, "gtboxes": []}) + "\n")
    prepare(root, out)
    assert labels_of(out, ID) == []


def test_foreign_files_are_never_deleted_or_overwritten(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20])]})
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "data" / "other.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    prepare(root, out, limit=None)
    prepare(root, out)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "data" / "other.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    # A file in the way that prepare() did not write stops it before it writes anything.
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / f"{ID}.txt").write_text("precious")
    with pytest.raises(DarknetIOError, match="did not write"):
        prepare(root, other)
    assert (other / "data" / f"{ID}.txt").read_text() == "precious"
    assert sorted(p.name for p in other.rglob("*")) == sorted(["data", f"{ID}.txt"])


def test_out_dir_must_differ_from_root_and_avoid_images_folders(tmp_path):
    root = make_root(tmp_path, {ID: []})
    with pytest.raises(DataError, match="dataset root"):
        prepare(root, root)
    with pytest.raises(DataError, match="'images'"):
        prepare(root, tmp_path / "images" / "out")


def test_limit_takes_the_first_records_of_each_split(tmp_path):
    root = make_root(tmp_path, {f"{i},x": [] for i in range(5)}, {f"{i},v": [] for i in range(3)})
    summary = prepare(root, tmp_path / "out", limit=2)
    assert (summary.train_images, summary.val_images) == (2, 2)
    assert (tmp_path / "out" / "train.txt").read_text().splitlines()[1].endswith("1,x.jpg")
    assert prepare(root, tmp_path / "none", limit=0).images == 0


# --------------------------------------------------------------------------- bad inputs


def test_missing_and_unreadable_images_are_reported_and_left_out(tmp_path):
    root = make_root(tmp_path, {ID: [person(hbox=[10, 10, 20, 20])], "2,gone": [person(hbox=[1, 1, 30, 30])],
                                "3,junk": []})
    (root / "Images" / "2,gone.jpg").unlink()
    (root / "Images" / "3,junk.jpg").write_bytes(b"not an image at all")
    summary = prepare(root, tmp_path / "out")
    assert summary.missing_images == ["2,gone"] and summary.unreadable_images == ["3,junk"]
    assert summary.train_images == 1 and summary.boxes["head"] == 1
    assert (tmp_path / "out" / "train.txt").read_text().count("\n") == 1
    assert "missing: 1, unreadable: 1" in summary.report()


def test_empty_odgt_is_an_error(tmp_path):
    root = make_root(tmp_path, {ID: []})
    (root / "annotation_val.odgt").write_text("\n")
    with pytest.raises(DataError, match=r"annotation_val\.odgt: no records"):
        prepare(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_record_in_prepare_names_file_and_line(tmp_path):
    root = make_root(tmp_path, {ID: []})
    with open(root / "annotation_train.odgt", "a") as f:
        f.write('{"ID": "x", "gtboxes": [{"hbox": [1, 2, 3]}]}\n')
    with pytest.raises(DataError, match=r"annotation_train\.odgt:2: field 'gtboxes\[0\]'\.hbox"):
        prepare(root, tmp_path / "out")


def test_duplicate_ids_are_an_error(tmp_path):
    root = make_root(tmp_path, {ID: []}, {ID: []})
    with pytest.raises(DataError, match=r"annotation_val\.odgt:1: field 'ID'.*already appears at .*train\.odgt:1"):
        prepare(root, tmp_path / "out")


def test_missing_annotation_file(tmp_path):
    root = make_root(tmp_path, {ID: []})
    (root / "annotation_val.odgt").unlink()
    with pytest.raises(DarknetIOError, match="annotation_val.odgt"):
        prepare(root, tmp_path / "out")


def test_bad_options(tmp_path):
    root = make_root(tmp_path, {ID: []})
    with pytest.raises(DataError, match="write_cfg"):
        prepare(root, tmp_path / "out", write_cfg="yolov9")
    with pytest.raises(DataError, match="link"):
        prepare(root, tmp_path / "out", link="move")


# --------------------------------------------------------------------------- image sizes


def test_image_size_reads_jpeg_headers_and_falls_back_to_opencv(tmp_path):
    image = np.zeros((123, 457, 3), np.uint8)
    baseline, progressive, png = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    cv2.imwrite(str(baseline), image)
    cv2.imwrite(str(progressive), image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    png.write_bytes(cv2.imencode(".png", image)[1].tobytes())  # a PNG behind a .jpg name
    for path in (baseline, progressive, png):
        assert image_size(path) == (457, 123)
    truncated = tmp_path / "d.jpg"
    truncated.write_bytes(baseline.read_bytes()[:4])
    assert image_size(truncated) is None
    assert image_size(tmp_path / "none.jpg") is None


# --------------------------------------------------------------------------- synthesize


def test_synthesize_writes_crowdhuman_layout_deterministically(tmp_path):
    a = synthesize(tmp_path / "a", train=6, val=3, seed=3)
    b = synthesize(tmp_path / "b", train=6, val=3, seed=3)
    c = synthesize(tmp_path / "c", train=6, val=3, seed=4)
    assert a.train_ids == b.train_ids and a.val_ids == b.val_ids and a.train_ids != c.train_ids
    assert all(re.fullmatch(r"\d{6},[0-9a-f]{15}", i) for i in a.train_ids + a.val_ids)
    for name in ("annotation_train.odgt", "annotation_val.odgt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for image_id in a.train_ids:
        assert (tmp_path / "a" / "Images" / f"{image_id}.jpg").read_bytes() == \
               (tmp_path / "b" / "Images" / f"{image_id}.jpg").read_bytes()
    records = list(parse_odgt(tmp_path / "a" / "annotation_train.odgt"))
    assert [r.id for r in records] == a.train_ids


def test_synthesized_annotations_are_consistent(tmp_path):
    summary = synthesize(tmp_path, train=30, val=0, seed=1, mask_probability=0.5)
    records = list(parse_odgt(tmp_path / "annotation_train.odgt"))
    boxes = [gt for r in records for gt in r.gtboxes]
    persons = [gt for gt in boxes if not gt.is_mask]
    assert len(persons) == summary.persons >= 30 and summary.masks == sum(gt.is_mask for gt in boxes) > 0
    assert any(gt.head_ignored or gt.body_ignored for gt in persons)
    cut = 0
    for record in records:
        w, h = image_size(tmp_path / "Images" / f"{record.id}.jpg")
        assert 320 <= w <= 640 and 0.6 <= w / h <= 2.0 + 0.02
        for gt in record.gtboxes:
            if gt.is_mask:
                assert gt.hbox is None
                continue
            fx, fy, fw, fh = gt.fbox
            hx, hy, hw, hh = gt.hbox
            assert fh / fw == pytest.approx(1 / 0.42, rel=0.1)     # human proportions
            assert fx <= hx and hx + hw <= fx + fw + 1 and hy == pytest.approx(fy, abs=1)
            vx, vy, vw, vh = gt.vbox
            assert fx - 1 <= vx and vx + vw <= fx + fw + 2 and 0 <= vx and vx + vw <= w
            cut += fx < 0 or fy < 0 or fx + fw > w or fy + fh > h
    assert cut > 0  # some figures are cut by the border


def test_synthesized_dataset_prepares_cleanly(tmp_path):
    synthesize(tmp_path / "root", train=10, val=4, seed=2)
    summary = prepare(tmp_path / "root", tmp_path / "out", 224, 224)
    assert summary.images == 14 and not summary.missing_images and not summary.unreadable_images
    assert summary.boxes["head"] > 10 and summary.boxes["person"] > 10
    for line in (tmp_path / "out" / "data").glob("*.txt"):
        assert all(LABEL_LINE.match(text) for text in line.read_text().splitlines())


# --------------------------------------------------------------------------- cfg


def test_write_cfg_uses_calc_anchors_and_the_cfg_builder(tmp_path):
    synthesize(tmp_path / "root", train=12, val=4, seed=5)
    out = tmp_path / "out"
    summary = prepare(tmp_path / "root", out, 320, 256, write_cfg="yolov4-tiny")
    assert summary.cfg_file == out / "yolov4-tiny-crowdhuman-320x256.cfg"
    text = summary.cfg_file.read_text()
    assert summary.anchors.anchors.shape == (6, 2) and 0.5 < summary.anchors.avg_iou <= 1
    pairs = ", ".join(f"{w},{h}" for w, h in summary.anchors.as_int_pairs())
    anchor_lines = [line.replace(" ", "") for line in text.splitlines() if line.startswith("anchors")]
    assert anchor_lines and all(line == "anchors=" + pairs.replace(" ", "") for line in anchor_lines)
    assert re.search(r"^classes\s*=\s*2$", text, re.M) and re.search(r"^width\s*=\s*320$", text, re.M)
    # Same boxes, same seed: the cfg's anchors are calc_anchors' over train + val.
    from darknet_py.anchors import calc_anchors
    (out / "both.txt").write_text((out / "train.txt").read_text() + (out / "test.txt").read_text())
    (out / "both.data").write_text(f"classes = 2\ntrain = {out / 'both.txt'}\n")
    np.testing.assert_allclose(calc_anchors(out / "both.data", 6, 320, 256).anchors, summary.anchors.anchors,
                               rtol=1e-4)
    again = prepare(tmp_path / "root", out, 320, 256, write_cfg="yolov4-tiny")  # its own cfg is not in the way
    assert again.cfg_file.read_text() == text


@pytest.mark.slow
def test_prepare_benchmark_2000_images_under_60_s(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "prepare.py"
    spec = importlib.util.spec_from_file_location("prepare_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    seconds, persons, summary = benchmark.run(tmp_path, images=2000)
    assert summary.images == 2000 and persons > 35000
    assert seconds < 60, f"prepare() took {seconds:.1f} s"
