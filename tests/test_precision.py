"""bf16 inference, Network(precision="bf16"): the convolutions round their operands to bfloat16
and sum the products in fp32 (AVX512-BF16). Checked against darknet's formula in float64 on the
rounded operands, against fp32 on the demo's trained detector (mAP and boxes), and for what must
not change: training stays fp32, fp32 stays bit-exact, weight changes reach the bf16 copies."""
from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

import darknet_py as dn
from darknet_py.cli import main
from darknet_py.names import PRECISIONS
from test_conv_paths import SHAPES, lively, parameters, reference, write_conv_cfg

BF16 = dn.precision_supported("bf16")
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU lacks AVX512-BF16")
#: A build whose bf16 runs on oneDNN (DARKNET_PY_ONEDNN=1): every layer in bf16, Winograd's too.
ONEDNN = dn.bf16_backend().startswith("oneDNN")
#: The default build on the AVX512-BF16 kernel: 3x3 layers of stride 1 and 2 in bf16 without
#: im2col (vendor/darknet/src/direct_bf16.c), but for those with fewer weights (channels x filters)
#: than this on Winograd, which stay fp32 (convolutional_layer.c); with AMX all Winograd layers do.
DIRECT = dn.bf16_backend() == "darknet_py (AVX512-BF16)"
DIRECT_OVER_WINOGRAD_WEIGHTS = 256 * 512
#: Shapes for the direct path beside SHAPES': odd channels (a last pair half empty), more than one
#: chunk of 32 channel pairs, a map 2 wide (as many grid columns outside the image as in it), one
#: that would be on Winograd but has too many weights for it; at stride 2 (the input's four
#: phases) even and odd sides, a single row, a single column.
DIRECT_SHAPES = [
    (3, 16, 13, 11, 3, 1, 1, "leaky"),
    (67, 8, 5, 9, 3, 1, 0, "mish"),
    (8, 40, 7, 2, 3, 1, 1, "linear"),
    (512, 256, 12, 12, 3, 1, 1, "leaky"),
    (3, 16, 16, 13, 3, 2, 1, "leaky"),
    (67, 24, 9, 34, 3, 2, 0, "mish"),
    (8, 8, 1, 7, 3, 2, 1, "linear"),
    (5, 8, 6, 1, 3, 2, 0, "relu"),
]


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even), as float32."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def runs_winograd(shape: tuple) -> bool:
    """Whether the default build's bf16 pass leaves the layer on Winograd in fp32: winograd.c's
    rule (3x3 stride 1, >= 32 channels and filters, >= 9 tiles), and on the AVX512-BF16 kernel
    fewer weights than DIRECT_OVER_WINOGRAD_WEIGHTS."""
    channels, filters, height, width, size, stride = shape[:6]
    return (size == 3 and stride == 1 and channels >= 32 and filters >= 32
            and ((height + 3) // 4) * ((width + 3) // 4) >= 9
            and not (DIRECT and channels * filters >= DIRECT_OVER_WINOGRAD_WEIGHTS))


def test_precision_names_and_bad_values(tmp_path):
    assert PRECISIONS == ("fp32", "bf16")
    assert dn.precision_supported("fp32")
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *SHAPES[0])
    with pytest.raises(dn.ShapeError, match="precision must be one of 'fp32', 'bf16', got 'fp16'"):
        dn.Network(cfg, precision="fp16")
    with pytest.raises(dn.ShapeError, match="precision must be one of"):
        dn.precision_supported("int8")
    with dn.Network(cfg) as net:
        assert net.precision == "fp32"
        with pytest.raises(dn.ShapeError):
            net.precision = "half"
        assert net.precision == "fp32"


def cpu_flags() -> set[str]:
    """The first CPU's flags in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def test_bf16_backend_names_what_runs():
    backend = dn.bf16_backend()
    if ONEDNN:
        assert re.fullmatch(r"oneDNN \d+\.\d+\.\d+", backend)
    elif not BF16:
        assert backend == "darknet_py"
    elif {"amx_tile", "amx_bf16"} <= cpu_flags():  # Linux lists AMX only where it manages the tile state
        assert backend == "darknet_py (AMX)"
    else:
        assert backend == "darknet_py (AVX512-BF16)"


@pytest.mark.skipif(BF16, reason="this CPU runs bf16")
def test_bf16_is_refused_with_the_reason_where_the_cpu_lacks_it(tmp_path):
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *SHAPES[0])
    with pytest.raises(dn.StateError, match="AVX512-BF16"):
        dn.Network(cfg, precision="bf16")
    with dn.Network(cfg) as net:
        with pytest.raises(dn.StateError, match="AVX512-BF16"):
            net.precision = "bf16"
        assert net.precision == "fp32"


@needs_bf16
@pytest.mark.parametrize("shape", [s for s in SHAPES + DIRECT_SHAPES if ONEDNN or not runs_winograd(s)],
                         ids=lambda s: "x".join(map(str, s[:6])) + f"-bn{s[6]}-{s[7]}")
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_paths_equal_float64_on_the_rounded_operands(tmp_path, shape, threads):
    """im2col tiles, images side by side, stride 2 and 1x1 (the input read in place), 3x3
    layers of stride 1 and 2 without im2col on the AVX512-BF16 kernel, and in a oneDNN build
    every shape: the bf16 result is darknet's formula on bf16-rounded input and weights, to fp32
    summation."""
    channels, filters, height, width, size, stride, batch_normalize, activation = shape
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (3, channels, height, width)).astype(np.float32)
    with dn.Network(cfg, batch=3, seed=5, threads=threads, precision="bf16") as net:
        lively(net, rng)
        ours = net.forward_layer_outputs(x)[0]
        alone = np.concatenate([net.forward_layer_outputs(x[i:i + 1])[0] for i in range(3)])
        weights, *rest = parameters(net)
    expected = reference(bf16(x), bf16(weights), *rest, size, stride, batch_normalize, activation)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=2e-5)
    exact = reference(x, weights, *rest, size, stride, batch_normalize, activation)
    assert np.abs(ours - exact).max() > 1e-4  # it really ran in bf16
    np.testing.assert_array_equal(ours, alone)


@needs_bf16
@pytest.mark.skipif(ONEDNN, reason="the oneDNN build runs those layers in bf16 too")
@pytest.mark.parametrize("shape", [s for s in SHAPES if runs_winograd(s)],
                         ids=lambda s: "x".join(map(str, s[:6])) + f"-bn{s[6]}-{s[7]}")
def test_bf16_leaves_winograd_layers_in_fp32(tmp_path, shape):
    """Winograd's transforms would magnify bf16 rounding about twentyfold: those layers give
    fp32's very bits at precision bf16."""
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (3, shape[0], shape[2], shape[3])).astype(np.float32)
    with dn.Network(cfg, batch=3, seed=5, threads=2) as net:
        lively(net, rng)
        fp32 = net.forward_layer_outputs(x)[0]
        net.precision = "bf16"
        np.testing.assert_array_equal(net.forward_layer_outputs(x)[0], fp32)


@needs_bf16
def test_bf16_follows_weight_changes_and_fp32_stays_exact(tmp_path):
    """The bf16 copies of the weights are cached like the packed fp32 ones: set_parameter and
    load_weights must refresh them; going back to fp32 gives fp32's very bits."""
    for shape in (SHAPES[3], SHAPES[7]):  # im2col tiles, 1x1
        cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
        rng = np.random.default_rng(3)
        x = rng.normal(0, 1, (1, shape[0], shape[2], shape[3])).astype(np.float32)
        with dn.Network(cfg, seed=1) as net:
            lively(net, rng)
            fp32 = net.forward_layer_outputs(x)[0]
            net.precision = "bf16"
            first = net.forward_layer_outputs(x)[0]
            assert not np.array_equal(first, fp32)
            np.testing.assert_allclose(first, fp32, rtol=0, atol=0.05 * float(np.abs(fp32).max()))
            net.set_parameter(0, "weights", (net.get_parameter(0, "weights") * -0.5).astype(np.float32))
            changed = net.forward_layer_outputs(x)[0]
            net.save_weights(tmp_path / "changed.weights")
            net.precision = "fp32"
            changed_fp32 = net.forward_layer_outputs(x)[0]
        with dn.Network(cfg, tmp_path / "changed.weights", precision="bf16") as fresh:
            np.testing.assert_array_equal(fresh.forward_layer_outputs(x)[0], changed)
            fresh.precision = "fp32"
            np.testing.assert_array_equal(fresh.forward_layer_outputs(x)[0], changed_fp32)


def test_onednn_build_requirements(monkeypatch):
    """DARKNET_PY_ONEDNN=1 puts the oneDNN wheels into pip's build environment (library and
    headers), its library is the "onednn" extra, and an installed oneDNN build depends on it."""
    import importlib.metadata
    import sys
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "build_backend"))
    try:
        import darknet_py_backend as backend
    finally:
        sys.path.remove(str(root / "build_backend"))
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["optional-dependencies"]["onednn"] == backend.ONEDNN_RUNTIME
    monkeypatch.setenv("DARKNET_PY_ONEDNN", "0")
    assert backend.onednn_requires(True) == [] and backend.onednn_requires(False) == []
    monkeypatch.setenv("DARKNET_PY_ONEDNN", "1")
    assert backend.onednn_requires(False) == ["onednn-cpu-gomp==2023.2.0"]
    assert backend.onednn_requires(True) == ["onednn-cpu-gomp==2023.2.0", "onednn-devel-cpu-gomp==2023.2.0"]
    try:
        installed = importlib.metadata.distribution("darknet_py")
    except importlib.metadata.PackageNotFoundError:
        return  # only on sys.path
    if not Path(dn.__file__).resolve().is_relative_to(Path(installed.locate_file("")).resolve()):
        return  # an editable install or a tree on PYTHONPATH: its metadata may be another build's
    unconditional = [r for r in installed.requires or [] if "extra ==" not in r]
    assert any(r.startswith("onednn-cpu-gomp") for r in unconditional) == ONEDNN, installed.requires


@needs_bf16
@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4-tiny-3l", "yolov3-tiny", "yolov4"])
def test_bf16_whole_networks_stay_close_to_fp32(tmp_path, arch):
    """Every layer type of the four networks (route groups, 2x2 stride-1 and SPP maxpools,
    shortcuts, upsampling, several heads): each layer's output within a few percent of fp32
    (bf16 keeps 8 bits; relative to the layer's largest value), an image's result independent of
    the batch it came in, and the same network answering again after a resize, another thread
    count and new weights. In a oneDNN build, the intermediate outputs come out of its graph."""
    from darknet_py import cfg as cfg_builder

    cfg = cfg_builder.write_cfg(tmp_path / f"{arch}.cfg", arch, classes=3, width=128, height=96)
    rng = np.random.default_rng(11)
    x = rng.random((2, 3, 96, 128), dtype=np.float32)

    def worst_error(net, blob):
        net.precision = "fp32"
        fp32 = net.forward_layer_outputs(blob)
        net.precision = "bf16"
        bf = net.forward_layer_outputs(blob)
        assert not np.array_equal(fp32[-1], bf[-1])  # it really ran in bf16
        return max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(fp32, bf)), bf

    with dn.Network(cfg, batch=2, seed=3, threads=2) as net:
        error, both = worst_error(net, x)
        assert error < 0.05, error
        alone = net.forward_layer_outputs(x[1:])
        for together, single in zip(both, alone):
            np.testing.assert_array_equal(together[1:], single)
        net.threads = 1
        assert worst_error(net, x)[0] < 0.05
        net.set_parameter(0, "weights", (net.get_parameter(0, "weights") * 0.5).astype(np.float32))
        assert worst_error(net, x)[0] < 0.05
        net.resize(160, 128)
        assert worst_error(net, rng.random((1, 3, 128, 160), dtype=np.float32))[0] < 0.05


@needs_bf16
def test_bf16_layers_the_graph_cannot_express_still_run(tmp_path):
    """A grouped convolution and a 1x1 stride-2 one on an even map (oneDNN would need negative
    padding): the oneDNN build runs such a network on the engine's own bf16 path instead."""
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=8\n"
                   "[convolutional]\nfilters=16\nsize=3\nstride=1\npad=1\ngroups=2\nactivation=leaky\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=1\nstride=2\npad=0\nactivation=mish\n")
    x = np.random.default_rng(2).normal(0, 1, (1, 8, 32, 32)).astype(np.float32)
    with dn.Network(cfg, seed=4) as net:
        lively(net, np.random.default_rng(5))
        fp32 = net.forward_layer_outputs(x)
        net.precision = "bf16"
        bf = net.forward_layer_outputs(x)
    for a, b in zip(fp32, bf):
        assert not np.array_equal(a, b)
        assert np.abs(a - b).max() < 0.02 * np.abs(a).max()


@needs_bf16
def test_training_runs_in_fp32_whatever_the_precision(tmp_path):
    cfg = tmp_path / "layers.cfg"
    cfg.write_text("[net]\nwidth=40\nheight=40\nchannels=8\n"
                   "[convolutional]\nfilters=48\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=leaky\n"
                   "[convolutional]\nfilters=16\nsize=1\nstride=1\nactivation=linear\n")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 8, 40, 40)).astype(np.float32)
    top = rng.normal(size=(2, 16, 40, 40)).astype(np.float32)
    results = {}
    for precision in PRECISIONS:
        with dn.Network(cfg, batch=2, seed=2, precision=precision) as net:
            outputs = net.forward_train(x)
            results[precision] = [outputs[-1], net.backward(top), net.get_parameter(0, "weights_grad")]
    for a, b in zip(results["fp32"], results["bf16"]):
        np.testing.assert_array_equal(a, b)


def _iou(a: dn.Detection, b: dn.Detection) -> float:
    ax1, ay1, ax2, ay2 = a.xyxy
    bx1, by1, bx2, by2 = b.xyxy
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.slow
@needs_bf16
def test_bf16_detects_what_fp32_detects_on_the_trained_demo(trained_demo):
    """The issue's bar: mAP@0.5 within 0.5 points of fp32; matching boxes IoU >= 0.95."""
    import cv2

    from darknet_py.datafile import read_image_list

    data, cfg, weights = trained_demo.data_file, trained_demo.cfg_file, trained_demo.weights
    fp32 = dn.evaluate(data, cfg, weights, progress=False)
    bf = dn.evaluate(data, cfg, weights, progress=False, precision="bf16")
    assert abs(fp32.map - bf.map) <= 0.005, (fp32.report(), bf.report())

    images = [cv2.imread(str(p)) for p in read_image_list(data.parent / "test.txt")[:40]]
    with dn.Network(cfg, weights, batch=4, names=["head", "person"]) as net:
        reference_detections = net.detect_batch(images)
        net.precision = "bf16"
        bf16_detections = net.detect_batch(images)
    matched = unmatched = 0
    for theirs, ours in zip(reference_detections, bf16_detections):
        for det in theirs:
            same_class = [d for d in ours if d.class_id == det.class_id]
            best = max((_iou(det, d) for d in same_class), default=0.0)
            if best >= 0.5:
                matched += 1
                assert best >= 0.95, (det, best)
            else:
                unmatched += 1
    assert matched >= 40 and unmatched <= 0.02 * matched, (matched, unmatched)

    # the command line takes the same switch
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["detector", "map", str(data), str(cfg), str(weights), "--precision", "bf16"]) == 0
    assert f"{100 * bf.map:.2f} %" in out.getvalue()
