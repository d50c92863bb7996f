"""Backward passes checked against central finite differences of a scalar loss.

Each check compares the backward pass's directional derivative <grad, v> along a random
direction v with (L(p + eps v) - L(p - eps v)) / (2 eps), L = sum(output * R).

The engine computes in float32. Each output carries a relative rounding error of about 6e-8,
so L = sum of ~500 products of unit size has an error of ~1.4e-6 and the quotient one of
1.4e-6 / eps. Smooth layers use eps = 1e-3: rounding ~1e-3 and truncation O(eps^2) ~1e-6,
against directional derivatives of order 1-100, so a relative tolerance of 2e-2 (absolute
2e-3) passes correct gradients and fails any dropped term or factor. Piecewise-linear layers
(leaky, relu, maxpool) are differentiable only away from their kinks, and with ~500 values
some lie within 1e-3 of one (measured: the quotient at eps = 1e-3 is then off by ~8%, at
1e-5 it agrees with the exact gradient), so they use eps = 1e-5 with an absolute tolerance of
0.3 (rounding ~0.14).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import darknet_py as dn

RTOL = 2e-2
SMOOTH = (1e-3, 2e-3)  # eps, absolute tolerance
KINKED = (1e-5, 0.3)


def make_net(tmp_path: Path, body: str, width: int = 8, height: int = 8, channels: int = 3, batch: int = 2):
    path = tmp_path / "grad.cfg"
    path.write_text(f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n{body}")
    return dn.Network(path, batch=batch, seed=5)


def loss(net: dn.Network, x: np.ndarray, weights: np.ndarray) -> float:
    return float((net.forward_train(x)[-1].astype(np.float64) * weights).sum())


def check_direction(loss_at, grad: np.ndarray, shape: tuple, rng, what: str, kinked: bool) -> None:
    """Compare <grad, v> with central differences of loss_at(step) = L(p + step) along random v."""
    eps, atol = KINKED if kinked else SMOOTH
    v = rng.normal(size=shape).astype(np.float32)
    analytic = float((grad * v).sum())
    numeric = (loss_at(eps * v) - loss_at(-eps * v)) / (2 * eps)
    assert abs(analytic - numeric) <= RTOL * max(abs(analytic), abs(numeric)) + atol, \
        f"{what}: backward {analytic:.6f} vs finite difference {numeric:.6f}"


def check_gradients(net: dn.Network, seed: int = 0, kinked: bool = False) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(net.batch, net.channels, net.height, net.width)).astype(np.float32)
    top = rng.normal(size=(net.batch,) + net.layers[-1].output_shape)
    net.zero_grad()
    net.forward_train(x)
    input_grad = net.backward(top.astype(np.float32)).astype(np.float64)
    check_direction(lambda step: loss(net, x + step, top), input_grad, x.shape, rng, "input", kinked)

    checked = 0
    for layer in net.layers:
        if layer.type != "convolutional":
            continue
        kinds = ["weights", "biases"] + (["scales"] if layer.batch_normalize else [])
        for kind in kinds:
            grad = net.get_parameter(layer.index, f"{kind}_grad").astype(np.float64)
            value = net.get_parameter(layer.index, kind)

            def loss_at(step: np.ndarray, index: int = layer.index, kind: str = kind, value=value) -> float:
                net.set_parameter(index, kind, value + step)
                try:
                    return loss(net, x, top)
                finally:
                    net.set_parameter(index, kind, value)

            check_direction(loss_at, grad, value.shape, rng, f"layer {layer.index} {kind}", kinked)
            checked += 1
    assert checked or not any(layer.type == "convolutional" for layer in net.layers)


CONV = "[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\npad={pad}\ngroups={groups}\n" \
       "batch_normalize={bn}\nactivation={act}\n"


@pytest.mark.parametrize("activation", ["logistic", "linear", "leaky", "relu", "mish", "swish"])
@pytest.mark.parametrize("batch_normalize", [0, 1])
def test_convolutional_activations_and_batch_norm(tmp_path, activation, batch_normalize):
    body = CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=batch_normalize, act=activation)
    with make_net(tmp_path, body) as net:
        check_gradients(net, kinked=activation in ("leaky", "relu"))


@pytest.mark.parametrize("size,stride,pad,groups", [(1, 1, 0, 1), (3, 2, 1, 1), (3, 1, 0, 1), (3, 1, 1, 3),
                                                    (5, 2, 1, 3), (1, 2, 0, 1)])
def test_convolutional_geometry_and_groups(tmp_path, size, stride, pad, groups):
    body = CONV.format(filters=6, size=size, stride=stride, pad=pad, groups=groups, bn=1, act="mish")
    with make_net(tmp_path, body, width=9, height=7) as net:
        check_gradients(net, seed=size + stride)


@pytest.mark.parametrize("size,stride,padding", [(2, 2, None), (2, 1, None), (3, 2, None), (3, 1, 2), (5, 1, 4)])
def test_maxpool(tmp_path, size, stride, padding):
    # maxpool straight on the input (independent values: no near-ties between neighbours, which a
    # convolution in front would create), then a convolution for a weighted loss
    extra = "" if padding is None else f"padding={padding}\n"
    body = f"[maxpool]\nsize={size}\nstride={stride}\n{extra}" + \
        CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=0, act="linear")
    with make_net(tmp_path, body) as net:
        check_gradients(net, seed=size * 10 + stride, kinked=True)


@pytest.mark.parametrize("route", ["layers=-1,-2", "layers=-2\ngroups=2\ngroup_id=1", "layers=0\ngroups=2\ngroup_id=0",
                                   "layers=-1,0\ngroups=2\ngroup_id=1"])
def test_route(tmp_path, route):
    body = CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=1, act="mish") + \
        CONV.format(filters=4, size=1, stride=1, pad=0, groups=1, bn=0, act="swish") + \
        f"[route]\n{route}\n" + CONV.format(filters=3, size=3, stride=1, pad=1, groups=1, bn=0, act="linear")
    with make_net(tmp_path, body) as net:
        check_gradients(net)


@pytest.mark.parametrize("activation", ["linear", "leaky", "logistic", "mish"])
def test_shortcut(tmp_path, activation):
    body = CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=1, act="mish") + \
        CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=1, act="swish") + \
        f"[shortcut]\nfrom=-2\nactivation={activation}\n"
    with make_net(tmp_path, body) as net:
        check_gradients(net, kinked=activation == "leaky")


@pytest.mark.parametrize("stride,scale", [(2, 1.0), (3, 0.5)])
def test_upsample(tmp_path, stride, scale):
    body = CONV.format(filters=4, size=3, stride=2, pad=1, groups=1, bn=0, act="swish") + \
        f"[upsample]\nstride={stride}\nscale={scale}\n"
    with make_net(tmp_path, body) as net:
        check_gradients(net)


def test_whole_small_yolo_style_network(tmp_path):
    """All layer kinds chained as in yolov4-tiny (CSP block, route groups, maxpool, upsample)."""
    body = (CONV.format(filters=8, size=3, stride=2, pad=1, groups=1, bn=1, act="leaky")
            + CONV.format(filters=8, size=3, stride=1, pad=1, groups=1, bn=1, act="mish")
            + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
            + CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=1, act="swish")
            + "[route]\nlayers=-1,-2\n"
            + "[maxpool]\nsize=2\nstride=2\n"
            + "[upsample]\nstride=2\n"
            + "[shortcut]\nfrom=-6\nactivation=linear\n"
            + CONV.format(filters=5, size=1, stride=1, pad=0, groups=1, bn=0, act="logistic"))
    with make_net(tmp_path, body, width=16, height=16) as net:
        check_gradients(net, seed=11, kinked=True)


def test_gradients_accumulate_until_zeroed(tmp_path):
    body = CONV.format(filters=4, size=3, stride=1, pad=1, groups=1, bn=0, act="linear")
    with make_net(tmp_path, body) as net:
        x = np.ones((2, 3, 8, 8), np.float32)
        top = np.ones((2, 4, 8, 8), np.float32)
        net.zero_grad()
        net.forward_train(x)
        net.backward(top)
        once = net.get_parameter(0, "biases_grad")
        net.forward_train(x)
        net.backward(top)
        np.testing.assert_allclose(net.get_parameter(0, "biases_grad"), 2 * once, rtol=1e-6)
        net.zero_grad()
        assert not net.get_parameter(0, "biases_grad").any()
