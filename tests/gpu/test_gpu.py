"""The CUDA build against the CPU engine (skipped unless a CUDA build and a GPU are present).

Forward outputs of the YOLO families within 1e-3 of the CPU, one training iteration's weight
updates within 1e-3 relative, the state copies (weights, gradients, resize, back to the CPU),
the demo recipe reaching the CPU's mAP bar when trained on the GPU, no device memory growth
over 50 create/forward/close cycles, and two networks on two threads giving the outputs each
gives alone. Each test records its figure (conftest.py prints them as "GPU figures").
"""
from __future__ import annotations

import ctypes
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import darknet_py as dn
from darknet_py._engine import lib
from darknet_py.network import gpu_available, gpu_status

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not lib.dn_gpu_built(), reason="darknet_py was built without CUDA (DARKNET_PY_GPU=1)"),
    pytest.mark.skipif(not gpu_available(), reason=f"no usable CUDA device: {gpu_status()}"),
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


def _device_free_bytes() -> int:
    """cudaMemGetInfo's free bytes on the current device, through the libcudart the engine has
    loaded (the same library, so the same context)."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        paths = sorted({line.split()[-1] for line in maps if "libcudart.so" in line})
    assert paths, "libcudart is not loaded"
    cudart = ctypes.CDLL(paths[0])
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    assert cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) == 0
    return free.value


def test_device(figure):
    figure(gpu_status())


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_cpu(arch_files, arch, figure):
    cfg, weights = arch_files(arch, 416, 416)
    blob = _blob(2, 416)
    worst = 0.0
    with dn.Network(cfg, weights, batch=2) as cpu, dn.Network(cfg, weights, batch=2, gpu=0) as gpu:
        assert gpu.gpu == 0 and cpu.gpu is None
        for want, got in zip(cpu.forward(blob), gpu.forward(blob)):
            worst = max(worst, float(np.abs(got - want).max()))
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    figure(f"{arch}-416 forward, batch 2: max |GPU - CPU| = {worst:.2e} (bound 1e-3)")


def test_every_layer_matches_cpu(arch_files):
    cfg, weights = arch_files("yolov4-tiny-3l", 160, 160)
    blob = _blob(2, 160, seed=3)
    with dn.Network(cfg, weights, batch=2) as cpu, dn.Network(cfg, weights, batch=2, gpu=0) as gpu:
        for layer, want, got in zip(cpu.layers, cpu.forward_layer_outputs(blob), gpu.forward_layer_outputs(blob)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=f"layer {layer.index} {layer.type}")


@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4-tiny-3l", "yolov4"])
def test_training_iteration_matches_cpu(arch_files, arch, figure):
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
    relative = {i: float(np.linalg.norm(gpu_step[i] - want)) / max(float(np.linalg.norm(want)), 1e-12)
                for i, want in cpu_step.items()}
    worst = max(relative, key=relative.get)
    figure(f"{arch}-{size} one training iteration, batch 2: weight updates max over layers of "
           f"|GPU - CPU| / |CPU| = {relative[worst]:.2e} (layer {worst}; bound 1e-3); loss GPU {gpu_stats.loss:.6g} "
           f"CPU {cpu_stats.loss:.6g}")
    assert gpu_stats.count == cpu_stats.count
    assert gpu_stats.loss == pytest.approx(cpu_stats.loss, rel=1e-3)
    for i, want in cpu_step.items():
        assert relative[i] <= 1e-3, f"layer {i}"
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


def test_no_device_memory_growth(arch_files, figure):
    cfg, weights = arch_files("yolov4-tiny", 416, 416)
    blob = _blob(4, 416)

    def cycle() -> None:
        with dn.Network(cfg, weights, batch=4, gpu=0) as net:
            net.forward(blob)

    cycle()  # one-time costs: the CUDA context, cuBLAS's kernels, the allocator's pools
    before = _device_free_bytes()
    began = time.perf_counter()
    for _ in range(50):
        cycle()
    seconds = time.perf_counter() - began
    growth = before - _device_free_bytes()
    figure(f"device memory growth over 50 create/forward/close cycles (yolov4-tiny-416, batch 4): "
           f"{growth / 2**20:+.1f} MiB (bound 8 MiB; {seconds:.1f} s)")
    assert growth <= 8 * 2**20


def test_two_networks_on_two_threads(arch_files, figure):
    """Each network owns its stream and cuBLAS handle: run together on two threads, each gives
    the outputs it gives alone."""
    jobs = [(*arch_files("yolov4-tiny", 416, 416), _blob(2, 416, seed=11)),
            (*arch_files("yolov4-tiny-3l", 416, 416), _blob(2, 416, seed=12))]

    def run(cfg, weights, blob, rounds: int) -> list[list[np.ndarray]]:
        with dn.Network(cfg, weights, batch=2, gpu=0) as net:
            return [net.forward(blob) for _ in range(rounds)]

    alone = [run(*job, rounds=1)[0] for job in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = [f.result() for f in [pool.submit(run, *job, rounds=20) for job in jobs]]
    worst, identical = 0.0, True
    for want, rounds in zip(alone, together):
        for outs in rounds:
            for w, g in zip(want, outs):
                worst = max(worst, float(np.abs(g - w).max()))
                identical = identical and np.array_equal(g, w)
    figure(f"yolov4-tiny and yolov4-tiny-3l (416, batch 2) on two threads, 20 forwards each: max |together - "
           f"alone| = {worst:.2e}{' (bit-identical)' if identical else ''} (bound 1e-5)")
    assert worst <= 1e-5


def test_demo_recipe_learns_on_gpu(tmp_path, figure):
    from darknet_py.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(out_dir=tmp_path / "demo", gpus=[0], workers=8), progress=False)
    figure(f"demo recipe ({result.train_result.iteration} iterations) trained on the GPU: mAP@0.50 = "
           f"{result.map.map:.4f} (the CPU's bar: 0.90); demo {result.seconds:.0f} s, training "
           f"{result.train_result.seconds:.0f} s")
    assert result.map.map >= 0.90, result.map
