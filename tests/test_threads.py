"""Thread control: Network(threads=), DARKNET_PY_THREADS, and results across thread counts."""
from __future__ import annotations

import os

import numpy as np
import pytest

import darknet_py as dn
from darknet_py._engine import lib
from darknet_py.network import resolve_threads


def test_default_is_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.delenv("DARKNET_PY_THREADS", raising=False)
    assert resolve_threads() == len(os.sched_getaffinity(0))


def test_environment_variable_and_argument(monkeypatch, arch_files):
    cfg, weights = arch_files("yolov4-tiny", 64, 64)
    monkeypatch.setenv("DARKNET_PY_THREADS", "3")
    with dn.Network(cfg, weights) as net:
        assert net.threads == 3
        net.threads = 1
        assert net.threads == 1
        net.threads = None  # back to the default: the variable
        assert net.threads == 3
    with dn.Network(cfg, weights, threads=2) as net:  # the argument wins over the variable
        assert net.threads == 2


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", "100000"])
def test_bad_thread_counts_are_refused_with_the_source(monkeypatch, arch_files, value):
    cfg, weights = arch_files("yolov4-tiny", 64, 64)
    monkeypatch.setenv("DARKNET_PY_THREADS", value)
    with pytest.raises(dn.ShapeError, match="DARKNET_PY_THREADS"):
        dn.Network(cfg, weights)
    monkeypatch.delenv("DARKNET_PY_THREADS")
    with dn.Network(cfg, weights) as net:
        for bad in (0, -1, 2.0, True, 10**6):
            with pytest.raises(dn.ShapeError, match="threads"):
                net.threads = bad
        assert net.threads == resolve_threads()


def test_the_engine_is_built_with_threads():
    assert lib.dn_threads_available() == 1


@pytest.mark.parametrize("arch", ["yolov4-tiny", "yolov4-tiny-3l"])
def test_results_agree_across_thread_counts_and_repeat_exactly(arch_files, arch):
    cfg, weights = arch_files(arch, 160, 96)
    blob = np.random.default_rng(1).random((2, 3, 96, 160), dtype=np.float32)
    outputs = {}
    for threads in (1, 2, 3):
        with dn.Network(cfg, weights, batch=2, threads=threads) as net:
            first = net.forward(blob)
            again = net.forward(blob)
            for a, b in zip(first, again):  # the same count: bit for bit
                np.testing.assert_array_equal(a, b)
            outputs[threads] = first
    for threads in (2, 3):  # another count: the same values up to float rounding
        for a, b in zip(outputs[1], outputs[threads]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_training_step_agrees_across_thread_counts(tmp_path):
    """A few layers with batch norm: gradients from 1 and 2 threads agree to float rounding. (A
    whole YOLO at a small size is no test of this: batch norm over a 3x3 map of two images
    amplifies rounding, and the single-threaded engine with 1 and 2 BLAS threads differs there
    by 0.7 % too.)"""
    cfg = tmp_path / "layers.cfg"
    cfg.write_text("[net]\nwidth=40\nheight=40\nchannels=8\n"
                   "[convolutional]\nfilters=48\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=leaky\n"
                   "[maxpool]\nsize=2\nstride=2\n"
                   "[convolutional]\nfilters=64\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=mish\n"
                   "[route]\nlayers=-1,-2\n"
                   "[convolutional]\nfilters=16\nsize=1\nstride=1\nactivation=linear\n")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 8, 40, 40)).astype(np.float32)
    top = rng.normal(size=(3, 16, 20, 20)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        with dn.Network(cfg, batch=3, seed=2, threads=threads) as net:
            net.forward_train(x)
            input_grad = net.backward(top)
            results[threads] = [input_grad] + [net.get_parameter(i, "weights_grad") for i in (0, 2, 4)]
    for a, b in zip(results[1], results[2]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(a).max()))
