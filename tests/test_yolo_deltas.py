"""The [yolo] layer's training deltas against the derivative of the loss each is defined from.

darknet's delta is the negative gradient (sign "target - output"):
- objectness and classes: binary cross-entropy on a logistic output; its gradient with respect
  to the logit z is sigmoid(z) - target, so delta = normalizer * (target - p);
- boxes with iou_loss=mse: 0.5 * scale * iou_normalizer * (target - value)^2 on the activated
  x, y (after scale_x_y) and on the raw w, h, with scale = 2 - truth.w * truth.h;
- boxes with giou/diou/ciou: 1 - metric(pred, truth) for the predicted box (relative cx, cy,
  w, h); darknet's chain rule stops at the box for x, y and multiplies w, h by e^t only; CIoU's
  weight alpha is held constant (as in the CIoU paper).
Each is checked against a central finite difference in float64 of that loss, written here
from the textbook formulas. The network is a 1x1 convolution with zero weights, so every cell
sees the logits set by its biases.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import darknet_py as dn

CLASSES, MASKS = 2, 2
ANCHORS = [(8, 8), (16, 24), (40, 12)]
GRID = 8
NET = 64


def make_net(tmp_path, iou_loss: str, extra: str = "", mask: str = "0,1"):
    masks = len(mask.split(","))
    anchors = ", ".join(f"{w},{h}" for w, h in ANCHORS)
    cfg = tmp_path / "yolo.cfg"
    cfg.write_text(
        f"[net]\nwidth={NET}\nheight={NET}\nchannels=3\n"
        "[maxpool]\nsize=8\nstride=8\n"
        f"[convolutional]\nfilters={(CLASSES + 5) * masks}\nsize=1\nactivation=linear\n"
        f"[yolo]\nmask={mask}\nanchors={anchors}\nclasses={CLASSES}\nnum={len(ANCHORS)}\n"
        f"iou_loss={iou_loss}\niou_normalizer=0.5\ncls_normalizer=0.7\nobj_normalizer=0.9\n{extra}")
    return dn.Network(cfg, seed=1)


def run(net: dn.Network, truths: np.ndarray, seed: int = 0):
    """Set the logits (same in every cell), run one training step; return logits, outputs, deltas."""
    rng = np.random.default_rng(seed)
    conv = 1
    filters = net.layers[conv].filters
    net.set_parameter(conv, "weights", np.zeros((filters, 3, 1, 1), np.float32))
    logits = rng.normal(0, 0.5, filters).astype(np.float32)
    net.set_parameter(conv, "biases", logits)
    image = np.zeros((1, 3, NET, NET), np.float32)
    outputs = net.forward_train(image)[-1][0]
    net.train_step(image, truths[None].astype(np.float32))
    delta = net.layer_delta(2, 1)[0]
    masks = filters // (CLASSES + 5)
    shape = (masks, CLASSES + 5, GRID, GRID)
    return logits.reshape(masks, CLASSES + 5), outputs.reshape(shape), delta.reshape(shape)


def bce(z: float, target: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def derivative(f, x: float, h: float = 1e-6) -> float:
    x = float(x)  # float64: a float32 argument would make the step itself inexact
    return (f(x + h) - f(x - h)) / (2 * h)


TRUTH = np.array([[0.40, 0.55, 0.30, 0.35, 1]])  # cell (3, 4); shape closest to anchor 1 (16x24 px)


def test_objectness_and_class_deltas_are_cross_entropy_gradients(tmp_path):
    with make_net(tmp_path, "mse") as net:
        logits, out, delta = run(net, TRUTH)
    slot, i, j = 1, 3, 4
    # the assigned prediction: objectness target 1, class target one-hot
    assert delta[slot, 4, j, i] == pytest.approx(-0.9 * derivative(lambda z: bce(z, 1), logits[slot, 4]), abs=1e-5)
    for k in range(CLASSES):
        target = 1.0 if k == 1 else 0.0
        expected = -0.7 * derivative(lambda z: bce(z, target), logits[slot, 5 + k])
        assert delta[slot, 5 + k, j, i] == pytest.approx(expected, abs=1e-5)
    # every other prediction: objectness target 0 (no prediction overlaps enough to be ignored)
    others = np.ones((MASKS, GRID, GRID), bool)
    others[slot, j, i] = False
    expected_negative = [-0.9 * derivative(lambda z: bce(z, 0), logits[s, 4]) for s in range(MASKS)]
    for s in range(MASKS):
        np.testing.assert_allclose(delta[s, 4][others[s]], expected_negative[s], atol=1e-5)
        if s != slot:
            assert not delta[s, :4].any() and not delta[s, 5:].any()
    # no class or box delta anywhere but at the assigned prediction
    assert np.count_nonzero(delta[:, 5:]) == CLASSES and np.count_nonzero(delta[:, :4]) == 4


def test_label_smoothing_moves_class_targets(tmp_path):
    with make_net(tmp_path, "mse", "label_smooth_eps=0.2\n") as net:
        logits, out, delta = run(net, TRUTH)
    smoothed = {1: 1 * 0.8 + 0.1, 0: 0.1}
    for k, target in smoothed.items():
        assert delta[1, 5 + k, 4, 3] == pytest.approx(-0.7 * derivative(lambda z: bce(z, target), logits[1, 5 + k]),
                                                      abs=1e-5)


@pytest.mark.parametrize("scale_x_y", [1.0, 1.1])
def test_mse_box_deltas(tmp_path, scale_x_y):
    with make_net(tmp_path, "mse", f"scale_x_y={scale_x_y}\n") as net:
        logits, out, delta = run(net, TRUTH)
    slot, anchor, i, j = 1, 1, 3, 4
    x, y, w, h, _ = TRUTH[0]
    scale = (2 - w * h) * 0.5
    targets = [x * GRID - i, y * GRID - j, math.log(w * NET / ANCHORS[anchor][0]), math.log(h * NET / ANCHORS[anchor][1])]
    for e, target in enumerate(targets):
        value = float(out[slot, e, j, i])  # activated x, y (with scale_x_y); raw w, h
        loss = lambda v: 0.5 * scale * (target - v) ** 2  # noqa: E731
        assert delta[slot, e, j, i] == pytest.approx(-derivative(loss, value), rel=1e-4, abs=1e-6)


def iou_metric(p, t, kind: str, alpha=None) -> float:
    """IoU, GIoU, DIoU or CIoU of boxes (cx, cy, w, h), from the papers' definitions."""
    p_l, p_r, p_t, p_b = p[0] - p[2] / 2, p[0] + p[2] / 2, p[1] - p[3] / 2, p[1] + p[3] / 2
    t_l, t_r, t_t, t_b = t[0] - t[2] / 2, t[0] + t[2] / 2, t[1] - t[3] / 2, t[1] + t[3] / 2
    inter = max(0.0, min(p_r, t_r) - max(p_l, t_l)) * max(0.0, min(p_b, t_b) - max(p_t, t_t))
    union = p[2] * p[3] + t[2] * t[3] - inter
    iou = inter / union
    cw, ch = max(p_r, t_r) - min(p_l, t_l), max(p_b, t_b) - min(p_t, t_t)
    if kind == "giou":
        return iou - (cw * ch - union) / (cw * ch)
    if kind in ("diou", "ciou"):
        value = iou - ((p[0] - t[0]) ** 2 + (p[1] - t[1]) ** 2) / (cw ** 2 + ch ** 2)
        if kind == "ciou":
            v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
            a = alpha if alpha is not None else v / (1 - iou + v)
            value -= a * v
        return value
    return iou


def ciou_alpha(p, t) -> float:
    v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
    return v / (1 - iou_metric(p, t, "iou") + v)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_family_box_deltas(tmp_path, kind, seed):
    with make_net(tmp_path, kind) as net:
        logits, out, delta = run(net, TRUTH, seed)
    slot, anchor, i, j = 1, 1, 3, 4
    pred = [(i + float(out[slot, 0, j, i])) / GRID, (j + float(out[slot, 1, j, i])) / GRID,
            math.exp(float(out[slot, 2, j, i])) * ANCHORS[anchor][0] / NET,
            math.exp(float(out[slot, 3, j, i])) * ANCHORS[anchor][1] / NET]
    truth = list(TRUTH[0, :4])
    alpha = ciou_alpha(pred, truth) if kind == "ciou" else None
    assert 0 < iou_metric(pred, truth, "iou") < 1  # boxes overlap partly: every term is active

    def metric_along(e: int):
        def f(v: float) -> float:
            q = list(pred)
            q[e] = v
            return iou_metric(q, truth, kind, alpha)
        return f

    for e in range(4):
        gradient = derivative(metric_along(e), pred[e], 1e-7)  # d metric / d box; loss = 1 - metric
        chain = math.exp(float(out[slot, e, j, i])) if e >= 2 else 1.0
        assert delta[slot, e, j, i] == pytest.approx(0.5 * gradient * chain, rel=2e-3, abs=1e-6), f"entry {e}"


def test_iou_thresh_assigns_every_similar_anchor(tmp_path):
    truth = np.array([[0.40, 0.55, 0.20, 0.30, 0]])  # 12.8 x 19.2 px: IoU .64 with 16x24, .26 with 8x8
    with make_net(tmp_path, "mse") as net:
        _, _, only_best = run(net, truth)
    with make_net(tmp_path, "mse", "iou_thresh=0.2\n") as net:
        _, _, both = run(net, truth)
    assert only_best[0, 4, 4, 3] < 0 and only_best[1, 4, 4, 3] > 0  # anchor 0 is a negative
    assert both[0, 4, 4, 3] > 0 and both[1, 4, 4, 3] > 0           # anchor 0 assigned too


def test_truths_for_anchors_of_other_layers_are_left_to_them(tmp_path):
    wide = np.array([[0.5, 0.5, 0.6, 0.2, 0]])  # 38 x 13 px: closest to anchor 2, not in mask 0,1
    with make_net(tmp_path, "mse") as net:
        _, _, delta = run(net, wide)
    assert not delta[:, :4].any() and not (delta[:, 4] > 0).any()


def test_train_stats(tmp_path):
    with make_net(tmp_path, "ciou") as net:
        run(net, TRUTH)
        image = np.zeros((1, 3, NET, NET), np.float32)
        stats = net.train_step(image, TRUTH[None].astype(np.float32))
    assert stats.count == 1 and 0 < stats.avg_iou < 1 and 0 < stats.avg_obj < 1 and stats.loss > 0
    assert stats.loss == pytest.approx(stats.iou_loss + stats.class_loss, rel=1e-5)
