"""The CUDA build against the CPU engine (skipped unless a CUDA build and a GPU are present).

Forward outputs of the YOLO families within 1e-3 of the CPU, one training iteration's weight
updates within 1e-3 relative, the state copies (weights, gradients, resize, back to the CPU),
and the demo recipe reaching the CPU's mAP bar when trained on the GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

import darknet_py as dn
from darknet_py._engine import lib
from darknet_py.network import gpu_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not lib.dn_gpu_built(), reason="darknet_py was built without CUDA (DARKNET_PY_GPU=1)"),
    pytest.mark.skipif(not gpu_available(), reason="no usable CUDA device"),
]

ARCHS = ("yolov3-tiny", "yolov4-tiny", "yolov4-tiny-3l", "yolov4")


def _blob(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


def _truths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truths = np.zeros((n, 8, 5), np.float32)
    for b in range(n):
        for k in range(4):
            truths[b, k] = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.4),
                            rng.uniform(0.05, 0.4), rng.integers(0, 2))
    return truths


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_cpu(arch_files, arch):
    cfg, weights = arch_files(arch, 416, 416)
    blob = _blob(2, 416)
    with dn.Network(cfg, weights, batch=2) as cpu, dn.Network(cfg, weights, batch=2, gpu=0) as gpu:
        assert gpu.gpu == 0 and cpu.gpu is None
        for want, got in zip(cpu.forward(blob), gpu.forward(blob)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_every_layer_matches_cpu(arch_files):
    cfg, weights = arch_files("yolov4-tiny-3l", 160, 160)
    blob = _blob(2, 160, seed=3)
    with dn.Network(cfg, weights, batch=2) as cpu, dn.Network(cfg, weights, batch=2, gpu=0) as gpu:
        for layer, want, got in zip(cpu.layers, cpu.forward_layer_outputs(blob), gpu.forward_layer_outputs(blob)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=f"layer {layer.index} {layer.type}")


@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4-tiny-3l", "yolov4"])
def test_training_iteration_matches_cpu(arch_files, arch):
    size = 128 if arch == "yolov4" else 160
    cfg, weights = arch_files(arch, size, size)
    images, truths = _blob(2, size, seed=1), _truths(2, seed=1)
    results = []
    for device in (None, 0):
        with dn.Network(cfg, weights, batch=2, gpu=device) as net:
            convs = [layer.index for layer in net.layers if layer.type == "convolutional"]
            before = {i: net.get_parameter(i, "weights") for i in convs}
            stats = net.train_step(images, truths, iteration=1000)
            net.update(0.001, 0.9, 0.0005, 2)
            after = {i: net.get_parameter(i, "weights") for i in convs}
            biases = {i: net.get_parameter(i, "biases") for i in convs}
            results.append((stats, {i: after[i] - before[i] for i in convs}, biases))
    (cpu_stats, cpu_step, cpu_bias), (gpu_stats, gpu_step, gpu_bias) = results
    assert gpu_stats.count == cpu_stats.count
    assert gpu_stats.loss == pytest.approx(cpu_stats.loss, rel=1e-3)
    for i, want in cpu_step.items():
        scale = max(float(np.linalg.norm(want)), 1e-12)
        assert float(np.linalg.norm(gpu_step[i] - want)) / scale <= 1e-3, f"layer {i}"
        np.testing.assert_allclose(gpu_bias[i], cpu_bias[i], rtol=1e-3, atol=1e-5)


def test_input_gradient_matches_cpu(arch_files):
    cfg, weights = arch_files("yolov4-tiny", 96, 96)
    blob = _blob(2, 96, seed=2)
    grads = []
    for device in (None, 0):
        with dn.Network(cfg, weights, batch=2, gpu=device) as net:
            outs = net.forward_train(blob)
            top = np.random.default_rng(5).normal(size=outs[-1].shape).astype(np.float32)
            grads.append((net.backward(top), net.get_parameter(0, "weights_grad"), net.get_parameter(0, "scales_grad")))
    for want, got in zip(*grads):
        scale = max(float(np.abs(want).max()), 1e-12)
        assert float(np.abs(got - want).max()) / scale <= 1e-3


def test_state_round_trips(arch_files, tmp_path):
    cfg, weights = arch_files("yolov4-tiny", 160, 160)
    blob = _blob(1, 160)
    with dn.Network(cfg, weights, gpu=0) as net:
        w = net.get_parameter(0, "weights")
        net.set_parameter(0, "weights", w * 0.5)
        np.testing.assert_array_equal(net.get_parameter(0, "weights"), w * 0.5)
        saved = net.save_weights(tmp_path / "half.weights")
        first = net.forward(blob)
        net.resize(224, 224)
        assert net.forward(_blob(1, 224))[0].shape[-1] == 7
        net.resize(160, 160)
        np.testing.assert_allclose(net.forward(blob)[0], first[0], rtol=1e-5, atol=1e-5)
    with dn.Network(cfg, saved) as cpu:
        np.testing.assert_allclose(cpu.forward(blob)[0], first[0], rtol=1e-3, atol=1e-3)


def test_explicit_missing_device_raises(arch_files):
    cfg, _ = arch_files("yolov4-tiny", 160, 160)
    with pytest.raises(dn.DarknetError):
        dn.Network(cfg, gpu=dn.network.gpu_count() + 7)


def test_demo_recipe_learns_on_gpu(tmp_path):
    from darknet_py.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out_dir=tmp_path / "demo", gpus=[0], workers=8), progress=False)
    assert result.map.map >= 0.90, result.map
