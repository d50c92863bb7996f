"""Memory is returned on close, and networks are safe to use from several threads."""
from __future__ import annotations

import ctypes
import gc
import os
import threading

import numpy as np
import pytest

import darknet_py as dn


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def allocated_bytes() -> int:
    """Bytes the C heap has handed out and not had back (glibc's mallinfo2: in-use heap blocks
    plus mmapped ones). Unlike the resident size it does not depend on which freed blocks glibc
    keeps for later, so a leak shows as growth and nothing else does. The resident size where
    mallinfo2 is missing."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return resident_bytes()
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_loading_and_closing_yolov4_200_times_does_not_leak(arch_files):
    cfg, weights = arch_files("yolov4")
    blob = np.random.default_rng(0).random((1, 3, 416, 416), dtype=np.float32)
    for _ in range(3):  # let allocator pools and lazy imports settle first
        with dn.Network(cfg, weights) as net:
            net.forward(blob)
    gc.collect()
    before = resident_bytes()
    for i in range(200):
        net = dn.Network(cfg, weights if i % 2 else None)
        if i % 50 == 0:
            net.forward(blob)
        net.close()
    gc.collect()
    growth = resident_bytes() - before
    assert growth < 20 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"


def test_dropping_a_network_without_close_frees_it(arch_files):
    cfg, weights = arch_files("yolov4-tiny")
    dn.Network(cfg, weights).close()  # one-time allocations (BLAS buffers of each thread)
    gc.collect()
    before = allocated_bytes()
    for _ in range(20):
        dn.Network(cfg, weights)  # never closed: __del__ must free the engine's memory
    gc.collect()
    # each network holds about 30 MB: one left behind would show
    assert allocated_bytes() - before < 8 * 2**20


def test_two_networks_in_two_threads_match_each_alone(arch_files):
    cfg_a, weights_a = arch_files("yolov4-tiny")
    cfg_b, weights_b = arch_files("yolov3-tiny")
    rng = np.random.default_rng(1)
    blobs = [rng.random((2, 3, 416, 416), dtype=np.float32) for _ in range(3)]
    with dn.Network(cfg_a, weights_a, batch=2) as net_a, dn.Network(cfg_b, weights_b, batch=2) as net_b:
        alone = {name: [net.forward(b) for b in blobs] for name, net in (("a", net_a), ("b", net_b))}
        together: dict[str, list] = {}

        def run(name: str, net: dn.Network) -> None:
            together[name] = [net.forward(b) for b in blobs]

        threads = [threading.Thread(target=run, args=item) for item in (("a", net_a), ("b", net_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for name in ("a", "b"):
        for got, want in zip(together[name], alone[name]):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_one_network_shared_by_threads_gives_each_its_own_result(arch_files):
    cfg, weights = arch_files("yolov4-tiny")
    rng = np.random.default_rng(2)
    blobs = [rng.random((1, 3, 416, 416), dtype=np.float32) for _ in range(4)]
    with dn.Network(cfg, weights) as net:
        expected = [net.forward(b) for b in blobs]
        results: list = [None] * len(blobs)

        def run(i: int) -> None:
            for _ in range(3):
                results[i] = net.forward(blobs[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(blobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for got, want in zip(results, expected):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_batch_forward_equals_single_forwards(arch_files):
    cfg, weights = arch_files("yolov4-tiny")
    rng = np.random.default_rng(3)
    blob = rng.random((5, 3, 416, 416), dtype=np.float32)
    with dn.Network(cfg, weights, batch=2) as batched, dn.Network(cfg, weights) as single:
        together = batched.forward(blob)  # 5 images through a batch-2 network: split in 2 + 2 + 1
        for i in range(5):
            for whole, one in zip(together, single.forward(blob[i:i + 1])):
                np.testing.assert_allclose(whole[i:i + 1], one, rtol=0, atol=1e-5)


def test_detect_batch_equals_detect(arch_files):
    from test_forward_opencv import test_image

    cfg, weights = arch_files("yolov4-tiny")
    images = [test_image(500, 375, seed) for seed in range(3)]
    with dn.Network(cfg, weights, batch=3) as net:
        batched = net.detect_batch(images)
        for image, dets in zip(images, batched):
            single = net.detect(image)
            assert [(d.class_id, round(d.confidence, 4)) for d in dets] == \
                   [(d.class_id, round(d.confidence, 4)) for d in single]
