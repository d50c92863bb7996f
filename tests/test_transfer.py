"""Transfer learning as the CrowdHuman tutorial does it: training starts from a pretrained partial
file (yolov4-tiny.conv.29 there), not from random weights.

The demo's detector (yolov4-tiny-3l 160x160 trained from random weights on the built-in data) is
cut with `partial` after layer 28, as darknet's yolov4-tiny.conv.29 is, and fine-tuned on a
differently seeded built-in dataset with the demo's recipe; the same cfg trained from random
weights on the same data is the baseline. (The stopbackward freeze is checked in test_partial.py.)
"""
from __future__ import annotations

import pytest

import darknet_py as dn
from darknet_py.demo import DemoConfig

MAP_BAR = 0.88    # measured (2 engine threads, the engine's own GEMM and Winograd backward): partial 0.286 /
                  # 0.932 at 100 / 200; random, same 200-iteration schedule, 0.144 / 0.756; random, the
                  # demo's 600-iteration schedule, 0.939 at 500 (with OpenBLAS backward: 0.327 / 0.922,
                  # 0.063 / 0.853, 0.928)
CUT = 29                     # layers 0-28: everything below the first class-dependent head conv
FINE_TUNE = dict(max_batches=200, steps=(160, 180))


def first_iteration_at(maps: list[tuple[int, float]], bar: float):
    return next((iteration for iteration, value in maps if value >= bar), None)


@pytest.mark.slow
def test_a_partial_start_reaches_the_map_bar_in_far_fewer_iterations(trained_demo, tmp_path):
    demo = DemoConfig()
    target = dn.crowdhuman.synthesize(tmp_path / "crowdhuman", train=demo.train_images, val=demo.val_images,
                                      seed=demo.data_seed + 1)
    summary = dn.crowdhuman.prepare(target.root, tmp_path / "dataset", demo.width, demo.height,
                                    write_cfg=demo.arch, cfg_options=dict(demo.cfg_options, **FINE_TUNE),
                                    progress=False)
    start = dn.partial(trained_demo.cfg_file, trained_demo.weights, tmp_path / "demo.conv.29", CUT)
    with dn.Network(summary.cfg_file, start) as net:  # the heads of the new cfg are not in the file
        assert net.layers_loaded == sum(layer.type == "convolutional" for layer in net.layers[:CUT])
        assert net.seen == 0

    fine = dn.train(summary.data_file, summary.cfg_file, start, compute_map=True, backup_dir=tmp_path / "fine",
                    seed=5, progress=False)
    scratch = dn.train(summary.data_file, summary.cfg_file, None, compute_map=True,
                       backup_dir=tmp_path / "scratch", seed=5, progress=False)

    fine_at = first_iteration_at(fine.history.maps, MAP_BAR)
    demo_at = first_iteration_at(trained_demo.train_result.history.maps, MAP_BAR)
    report = (f"mAP by iteration: partial start {fine.history.maps}; random start, same data "
              f"{scratch.history.maps}; random start, the demo's data {trained_demo.train_result.history.maps}")
    print(report)
    assert fine_at is not None and fine_at <= FINE_TUNE["max_batches"], report
    assert first_iteration_at(scratch.history.maps, MAP_BAR) is None, report  # not in the same 200 iterations
    # ahead from the start: twice the random start's mAP at 100 here (by 0.14; the margin follows the
    # rounding of the training path, 0.26 under the OpenBLAS backward)
    assert dict(fine.history.maps)[100] > dict(scratch.history.maps)[100] + 0.10, report
    assert demo_at is not None and demo_at > fine_at, report  # its own schedule from random: 500 vs 200 here
