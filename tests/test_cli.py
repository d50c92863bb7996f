"""darknet-py's command line: every command on a tiny synthesized dataset, exit codes, errors."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from darknet_py import cli

SRC = Path(__file__).resolve().parents[1] / "src"
ARCH = "yolov4-tiny"
SIZE = 64


def run_cli(*argv: object) -> tuple[int, str, str]:
    """main(argv) in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def run_subprocess(*argv: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "darknet_py.cli", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A synthesized dataset prepared at 64x64 with a yolov4-tiny cfg (batch 2, 3 iterations)."""
    root = tmp_path_factory.mktemp("cli")
    synth = run_cli("crowdhuman", "synthesize", root / "raw", "--train", 16, "--val", 6, "--seed", 0)
    prep = run_cli("crowdhuman", "prepare", root / "raw", root / "ds", "--size", f"{SIZE}x{SIZE}", "--arch", ARCH,
                   "--batch", 2, "--max-batches", 3)
    ds = root / "ds"
    return dict(root=root, synth=synth, prep=prep, data=ds / "crowdhuman.data",
                cfg=ds / f"{ARCH}-crowdhuman-{SIZE}x{SIZE}.cfg", backup=ds / "backup",
                image=Path((ds / "test.txt").read_text().splitlines()[0]))


@pytest.fixture(scope="module")
def trained(dataset):
    result = run_cli("detector", "train", dataset["data"], dataset["cfg"], "-map", "-dont_show", "--seed", 1)
    return dict(dataset, train=result, weights=dataset["backup"] / f"{ARCH}-crowdhuman-{SIZE}x{SIZE}_final.weights")


def test_synthesize_writes_crowdhuman_layout(dataset):
    code, out, _ = dataset["synth"]
    assert code == 0
    assert re.search(r"^16 train \+ 6 val images, \d+ persons, \d+ mask regions -> ", out, re.M)
    raw = dataset["root"] / "raw"
    assert len(list((raw / "Images").glob("*.jpg"))) == 22
    assert len((raw / "annotation_train.odgt").read_text().splitlines()) == 16


def test_prepare_writes_dataset_cfg_and_anchors(dataset):
    code, out, _ = dataset["prep"]
    assert code == 0
    assert "22 images (16 train, 6 val)" in out
    assert re.search(r"^anchors = (\s*\d+,\s*\d+,?){6}$", out, re.M)  # yolov4-tiny: 6 anchors
    assert f"detector train {dataset['data']} {dataset['cfg']} -map" in out
    cfg = dataset["cfg"].read_text()
    assert "batch=2\n" in cfg and "max_batches=3\n" in cfg and f"width={SIZE}\n" in cfg
    assert (dataset["data"].parent / "crowdhuman.names").read_text().split() == ["head", "person"]


def test_prepare_without_cfg(dataset, tmp_path):
    code, out, _ = run_cli("crowdhuman", "prepare", dataset["root"] / "raw", tmp_path / "ds", "--size", "96",
                           "--arch", "none", "--limit", 3, "--vbox", "--relative-paths")
    assert code == 0
    assert "6 images (3 train, 3 val)" in out and "cfg:" not in out
    assert (tmp_path / "ds" / "crowdhuman.names").read_text().split() == ["head", "person", "vbox"]
    assert not (tmp_path / "ds" / "train.txt").read_text().startswith("/")


def test_calc_anchors_single_and_double_dash(dataset):
    single = run_cli("detector", "calc_anchors", dataset["data"], "-num_of_clusters", 6, "-width", SIZE,
                     "-height", SIZE, "-show")
    double = run_cli("detector", "calc_anchors", dataset["data"], "--num_of_clusters", 6, "--width", SIZE,
                     "--height", SIZE)
    assert single[0] == 0 and single[1] == double[1]
    assert re.search(r"^avg IoU = \d+\.\d\d %$", single[1], re.M)
    assert re.search(r"^anchors = (\s*\d+,\s*\d+,?){6}$", single[1], re.M)


def test_train_writes_checkpoints_and_chart(trained):
    code, out, err = trained["train"]
    assert code == 0, err
    assert f"final weights: {trained['weights']}" in out
    assert re.search(r"^3 iterations \(to 3\) in .* best mAP@0\.50 \d+\.\d\d %, seed 1$", out, re.M)
    assert trained["weights"].is_file()
    assert cv2.imread(str(trained["backup"] / "chart.png")) is not None


def test_map_prints_darknet_report(trained):
    code, out, _ = run_cli("detector", "map", trained["data"], trained["cfg"], trained["weights"],
                           "-points", 11, "-iou_thresh", 0.5, "-thresh", 0.25)
    assert code == 0
    assert re.search(r"^class_id = 1, name = person, ap = \d+\.\d\d%", out, re.M)
    assert "used 11 Recall-points" in out
    assert re.search(r"mean average precision \(mAP@0\.50\) = \d\.\d{6}, or \d+\.\d\d %", out)


def test_test_prints_detections_and_writes_image(trained, tmp_path):
    out_image = tmp_path / "predictions.jpg"
    code, out, _ = run_cli("detector", "test", trained["data"], trained["cfg"], trained["weights"],
                           trained["image"], "-thresh", 0.05, "-ext_output", "-dont_show", "--out", out_image)
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(r".+: Predicted in \d+\.\d+ milli-seconds\.", lines[0])
    detections = lines[1:-1]
    assert detections, "an untrained network still scores ~0.25 everywhere"
    box = r"\(left_x:\s+-?\d+\s+top_y:\s+-?\d+\s+width:\s+\d+\s+height:\s+\d+\)"
    assert all(re.fullmatch(rf"(head|person): \d+%\t{box}", line) for line in detections)
    assert lines[-1] == f"written: {out_image}"
    assert cv2.imread(str(out_image)).shape == cv2.imread(str(trained["image"])).shape


def test_test_without_ext_output_prints_names_only(trained, tmp_path):
    code, out, _ = run_cli("detector", "test", trained["data"], trained["cfg"], trained["weights"],
                           trained["image"], "-thresh", 0.05, "--out", tmp_path / "p.jpg")
    assert code == 0
    assert all(re.fullmatch(r"(head|person): \d+%", line) for line in out.splitlines()[1:-1])


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["crowdhuman", "--help"], ["crowdhuman", "prepare", "--help"], ["crowdhuman", "synthesize", "-h"],
    ["detector", "--help"], ["detector", "train", "--help"], ["detector", "map", "--help"],
    ["detector", "test", "--help"], ["detector", "calc_anchors", "--help"], ["demo", "--help"],
])
def test_help(argv):
    code, out, err = run_cli(*argv)
    if argv:
        assert code == 0 and out.startswith("usage: darknet-py")
    else:  # no command: argparse's usage error
        assert code == 2 and "usage: darknet-py" in err


@pytest.mark.parametrize("argv", [
    ["frobnicate"],
    ["detector", "map", "a.data", "b.cfg"],                                    # weights missing
    ["detector", "test", "a", "b", "c", "d", "-thresh", "2"],                  # outside 0..1
    ["detector", "calc_anchors", "a.data", "-num_of_clusters", "zero"],
    ["crowdhuman", "prepare", "root", "out", "--size", "416by416"],
    ["crowdhuman", "prepare", "root", "out", "--arch", "yolov9"],
])
def test_bad_arguments_exit_2(argv):
    code, out, err = run_cli(*argv)
    assert code == 2
    assert "usage: darknet-py" in err and "error:" in err and out == ""


def test_missing_file_is_one_line_exit_1(tmp_path):
    missing = tmp_path / "missing.data"
    code, out, err = run_cli("detector", "map", missing, tmp_path / "x.cfg", tmp_path / "x.weights")
    assert code == 1 and out == ""
    assert err == f"darknet-py: error: {missing}: .data file not found\n"


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_prints_traceback(tmp_path, position):
    argv = ["detector", "calc_anchors", tmp_path / "missing.data"]
    argv = ["--debug", *argv] if position == "before" else [*argv, "--debug"]
    code, _, err = run_cli(*argv)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "DarknetIOError" in err and err.endswith(f"darknet-py: error: {tmp_path / 'missing.data'}: "
                                                    ".data file not found\n")


def test_other_failure_names_its_type(monkeypatch, dataset):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")
    monkeypatch.setattr(cli, "train", broken)
    code, _, err = run_cli("detector", "train", dataset["data"], dataset["cfg"])
    assert code == 1
    assert err == "darknet-py: error: RuntimeError: disk on fire second line\n"


def test_keyboard_interrupt_exits_130(monkeypatch, dataset):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "train", interrupted)
    code, _, err = run_cli("detector", "train", dataset["data"], dataset["cfg"])
    assert code == 130
    assert err.strip() == "darknet-py: interrupted"


def test_subprocess_success_bad_arguments_and_failure(dataset, tmp_path):
    ok = run_subprocess("detector", "calc_anchors", dataset["data"], "-num_of_clusters", 6, "-width", SIZE,
                        "-height", SIZE)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"^anchors = ", ok.stdout, re.M)

    bad = run_subprocess("detector", "train")
    assert bad.returncode == 2 and "the following arguments are required: data, cfg" in bad.stderr

    missing = run_subprocess("detector", "test", dataset["data"], dataset["cfg"], tmp_path / "none.weights",
                             tmp_path / "none.jpg")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert missing.stderr == f"darknet-py: error: {tmp_path / 'none.jpg'}: image not found\n"


def test_a_reader_that_has_gone_ends_the_command_quietly(dataset):
    """`darknet-py ... | head`: the pipe's reader closes before the output is written."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    argv = [sys.executable, "-m", "darknet_py.cli", "detector", "calc_anchors", str(dataset["data"]),
            "-num_of_clusters", "6", "-width", str(SIZE), "-height", str(SIZE)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # long before the interpreter has started and printed anything
    _, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_BROKEN_PIPE, err
    assert err == b""


def test_test_rejects_a_file_that_is_not_an_image(dataset, tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a jpeg")
    code, _, err = run_cli("detector", "test", dataset["data"], dataset["cfg"], tmp_path / "w", fake)
    assert code == 1 and err == f"darknet-py: error: {fake}: not an image OpenCV can decode\n"


def test_size_type():
    assert cli.size_type("416x320") == (416, 320)
    assert cli.size_type("608") == (608, 608)
    for text in ("0x416", "416x", "axb", "1x2x3"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.size_type(text)
