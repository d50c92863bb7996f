"""Transfer learning as the CrowdHuman tutorial does it: a pretrained partial file, a frozen backbone.

The demo's detector (yolov4-tiny-3l 160x160, trained from random weights) is cut with
`partial` after its backbone and fine-tuned on a differently seeded built-in dataset, with
`stopbackward` freezing the backbone for the first 100 iterations; the same cfg trained from
random weights on the same data is the baseline.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import darknet_py as dn
from darknet_py.demo import DemoConfig

MAP_BAR = 0.85
FROZEN_ITERATIONS = 100
FINE_TUNE = dict(max_batches=200, burn_in=20, steps=(160, 180), stopbackward=FROZEN_ITERATIONS)


def first_iteration_at(maps: list[tuple[int, float]], bar: float):
    return next((iteration for iteration, value in maps if value >= bar), None)


@pytest.mark.slow
def test_partial_start_reaches_the_bar_much_sooner_and_stays_frozen(trained_demo, tmp_path):
    demo = DemoConfig()
    target = dn.crowdhuman.synthesize(tmp_path / "crowdhuman", train=demo.train_images, val=demo.val_images,
                                      seed=demo.data_seed + 1)
    options = dict(demo.cfg_options, **FINE_TUNE)
    summary = dn.crowdhuman.prepare(target.root, tmp_path / "dataset", demo.width, demo.height,
                                    write_cfg=demo.arch, cfg_options=options, progress=False)
    with dn.Network(summary.cfg_file) as net:
        frozen = next(layer.index for layer in net.layers if layer.stopbackward)
        convs = [layer.index for layer in net.layers[:frozen + 1] if layer.type == "convolutional"]
    assert frozen == 26  # the backbone: what yolov4-tiny-3l's partial cut keeps

    start = dn.partial(trained_demo.cfg_file, trained_demo.weights, tmp_path / "demo.conv.27", frozen + 1)
    kept_at = {}

    def keep_checkpoint(p: dn.TrainProgress) -> None:
        if p.iteration in (FROZEN_ITERATIONS, FINE_TUNE["max_batches"]):
            last = tmp_path / "fine" / f"{summary.cfg_file.stem}_last.weights"
            kept_at[p.iteration] = shutil.copyfile(last, tmp_path / f"last_{p.iteration}.weights")

    fine = dn.train(summary.data_file, summary.cfg_file, start, compute_map=True, backup_dir=tmp_path / "fine",
                    seed=5, progress=False, callback=keep_checkpoint)

    scratch_cfg = tmp_path / "scratch.cfg"  # the same cfg without the freeze: random weights must learn
    scratch_cfg.write_text(summary.cfg_file.read_text().replace(f"stopbackward={FROZEN_ITERATIONS}\n", ""))
    scratch = dn.train(summary.data_file, scratch_cfg, None, compute_map=True, backup_dir=tmp_path / "scratch",
                       seed=5, progress=False)

    fine_at = first_iteration_at(fine.history.maps, MAP_BAR)
    scratch_at = first_iteration_at(scratch.history.maps, MAP_BAR)
    demo_at = first_iteration_at(trained_demo.train_result.history.maps, MAP_BAR)
    report = (f"mAP by iteration: partial start {fine.history.maps}; random start, same data "
              f"{scratch.history.maps}; random start, the demo's data {trained_demo.train_result.history.maps}")
    print(report)
    assert fine_at is not None and fine_at <= 100, report
    assert scratch_at is None, report  # not within the same 200 iterations
    assert demo_at is None or demo_at >= 3 * fine_at, report

    # frozen for 100 iterations: the backbone's weights, biases and scales are the partial file's, bit for bit
    with dn.Network(summary.cfg_file, start) as loaded, dn.Network(summary.cfg_file, kept_at[100]) as at_100, \
            dn.Network(summary.cfg_file, kept_at[200]) as at_200:
        assert at_100.seen == 100 * 16
        for index in convs:
            for kind in ("weights", "biases", "scales"):
                np.testing.assert_array_equal(at_100.get_parameter(index, kind), loaded.get_parameter(index, kind))
        # then the freeze ends and the backbone learns too
        assert any(not np.array_equal(at_200.get_parameter(i, "weights"), loaded.get_parameter(i, "weights"))
                   for i in convs)
