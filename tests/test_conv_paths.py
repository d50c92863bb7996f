"""The engine's convolution algorithms (im2col tiles, Winograd F(4x4, 3x3) for 3x3 stride-1
layers) against darknet's formula evaluated directly in float64, and against each other, at
sizes that leave partial tiles; with threads, batches and training-mode batch norm."""
from __future__ import annotations

import numpy as np
import pytest

import darknet_py as dn

# Winograd runs for 3x3 stride-1 pad-1 layers with >= 32 input and output channels and >= 9
# output tiles of 4x4 (vendor/darknet/src/winograd.c); the others take the im2col path. On maps
# under 384 positions the im2col path puts the batch's images side by side: the forward in tiles
# of columns across images, the backward in chunks (vendor/darknet/src/convolutional_layer.c).
SHAPES = [
    # (channels, filters, height, width, size, stride, batch_normalize, activation)
    (32, 32, 17, 23, 3, 1, 1, "leaky"),     # Winograd, odd sides: partial 4x4 tiles
    (48, 40, 30, 30, 3, 1, 0, "mish"),      # Winograd, bias only
    (32, 64, 16, 16, 3, 1, 1, "logistic"),  # Winograd, 16 whole tiles
    (16, 32, 20, 20, 3, 1, 1, "leaky"),     # too few channels: im2col
    (32, 32, 9, 9, 3, 1, 1, "swish"),       # Winograd, 9 tiles: the last row and column nearly empty
    (32, 32, 4, 8, 3, 1, 1, "swish"),       # too few tiles (2): im2col, images side by side
    (24, 32, 21, 19, 3, 2, 1, "relu"),      # stride 2: im2col
    (32, 16, 12, 12, 1, 1, 0, "linear"),    # 1x1: GEMM on the input
    (64, 32, 7, 6, 3, 1, 0, "leaky"),       # 4 tiles (5x5 maps' count): im2col, chunks of 10 images
    (40, 32, 13, 11, 3, 1, 0, "leaky"),     # Winograd, 40 channels: the weight gradient's last panel half full
]


def write_conv_cfg(path, channels, filters, height, width, size, stride, batch_normalize, activation):
    path.write_text(
        f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\nbatch=1\n\n"
        f"[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
        f"batch_normalize={batch_normalize}\nactivation={activation}\n")
    return path


ACTIVATIONS = {
    "linear": lambda x: x,
    "leaky": lambda x: np.where(x > 0, x, 0.1 * x),
    "relu": lambda x: np.maximum(x, 0),
    "logistic": lambda x: 1 / (1 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "swish": lambda x: x / (1 + np.exp(-x)),
}


def reference(x, weights, biases, scales, mean, variance, size, stride, batch_normalize, activation):
    """darknet's convolution, inference batch norm and activation, directly in float64."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    f = weights.shape[0]
    pad = size // 2
    out_h, out_w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    out = np.zeros((n, f, out_h, out_w))
    kernel = weights.reshape(f, c, size, size).astype(np.float64)
    for ky in range(size):
        for kx in range(size):
            patch = padded[:, :, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
            out += np.einsum("nchw,fc->nfhw", patch, kernel[:, :, ky, kx])
    if batch_normalize:
        out = (out - mean[:, None, None]) / np.sqrt(variance[:, None, None] + 1e-5) * scales[:, None, None]
    out += biases[:, None, None]
    return ACTIVATIONS[activation](out)


def lively(net: dn.Network, rng: np.random.Generator) -> None:
    """Random biases and batch-norm statistics (the defaults are 0 and 1: too easy)."""
    f = net.layers[0].filters
    net.set_parameter(0, "biases", rng.normal(0, 0.5, f).astype(np.float32))
    if net.layers[0].batch_normalize:
        net.set_parameter(0, "scales", rng.uniform(0.5, 1.5, f).astype(np.float32))
        net.set_parameter(0, "rolling_mean", rng.normal(0, 0.3, f).astype(np.float32))
        net.set_parameter(0, "rolling_variance", rng.uniform(0.5, 2, f).astype(np.float32))


def parameters(net: dn.Network) -> list[np.ndarray]:
    layer = net.layers[0]
    names = ["weights", "biases"] + (["scales", "rolling_mean", "rolling_variance"] if layer.batch_normalize else [])
    values = {name: net.get_parameter(0, name) for name in names}
    ones, zeros = np.ones(layer.filters), np.zeros(layer.filters)
    return [values["weights"], values["biases"], values.get("scales", ones), values.get("rolling_mean", zeros),
            values.get("rolling_variance", ones)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:6])) + f"-bn{s[6]}-{s[7]}")
@pytest.mark.parametrize("threads", [1, 2])
def test_convolution_matches_float64(tmp_path, shape, threads):
    channels, filters, height, width, size, stride, batch_normalize, activation = shape
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (3, channels, height, width)).astype(np.float32)
    with dn.Network(cfg, batch=3, seed=5, threads=threads) as net:
        lively(net, rng)
        ours = net.forward_layer_outputs(x)[0]
        alone = np.concatenate([net.forward_layer_outputs(x[i:i + 1])[0] for i in range(3)])
        expected = reference(x, *parameters(net), size, stride, batch_normalize, activation)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=2e-5)
    # an image's result does not depend on the images beside it
    np.testing.assert_array_equal(ours, alone)


def test_winograd_kernels_follow_weight_changes(tmp_path):
    """The transformed kernels are cached: set_parameter, load_weights and update must refresh them."""
    shape = SHAPES[0]
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
    channels, _, height, width, size, stride, batch_normalize, activation = shape
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (1, channels, height, width)).astype(np.float32)
    with dn.Network(cfg, seed=1) as net:
        lively(net, rng)
        before = net.forward_layer_outputs(x)[0]
        net.save_weights(tmp_path / "a.weights")
        weights = net.get_parameter(0, "weights")
        net.set_parameter(0, "weights", (weights * -0.5).astype(np.float32))
        changed = net.forward_layer_outputs(x)[0]
        np.testing.assert_allclose(changed, reference(x, *parameters(net), size, stride, batch_normalize,
                                                      activation), rtol=1e-5, atol=2e-5)
        net.load_weights(tmp_path / "a.weights")
        np.testing.assert_array_equal(net.forward_layer_outputs(x)[0], before)
        # one SGD step from a gradient: the next forward uses the updated weights
        net.forward_train(x)
        net.backward(np.ones_like(before))
        net.update(1e-3, 0.9, 0.0005, 1)
        after_update = net.forward_layer_outputs(x)[0]
        np.testing.assert_allclose(after_update, reference(x, *parameters(net), size, stride, batch_normalize,
                                                           activation), rtol=1e-5, atol=2e-5)
        assert not np.array_equal(after_update, before)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]], ids=["winograd", "im2col"])
def test_training_forward_batch_norm_uses_batch_statistics(tmp_path, shape):
    """forward_train normalises with the batch's own mean and (biased) variance, on both paths."""
    channels, filters, height, width, size, stride, batch_normalize, activation = shape
    cfg = write_conv_cfg(tmp_path / "conv.cfg", *shape)
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (2, channels, height, width)).astype(np.float32)
    with dn.Network(cfg, batch=2, seed=2) as net:
        lively(net, rng)
        weights, biases, scales, _, _ = parameters(net)
        ours = net.forward_train(x)[0]
    raw = reference(x, weights, np.zeros_like(biases), np.ones_like(scales), np.zeros_like(biases),
                    np.ones_like(scales) - 1e-5, size, stride, 1, "linear")
    mean = raw.mean(axis=(0, 2, 3))
    variance = raw.var(axis=(0, 2, 3))
    normalised = (raw - mean[:, None, None]) / np.sqrt(variance[:, None, None] + 1e-5)
    expected = ACTIVATIONS[activation](normalised * scales[:, None, None] + biases[:, None, None])
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def reference_gradients(x, weights, top, size, stride=1):
    """dL/dx and dL/dW of L = sum(top * conv(x, W)) (pad size // 2), in float64."""
    x, top = x.astype(np.float64), top.astype(np.float64)
    n, c, h, w = x.shape
    f = weights.shape[0]
    pad = size // 2
    kernel = weights.reshape(f, c, size, size).astype(np.float64)
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad:pad + h, pad:pad + w] = x
    input_grad = np.zeros_like(padded)
    weights_grad = np.zeros_like(kernel)
    out_h, out_w = top.shape[2:]
    for ky in range(size):
        for kx in range(size):
            taps = (slice(None), slice(None), slice(ky, ky + stride * (out_h - 1) + 1, stride),
                    slice(kx, kx + stride * (out_w - 1) + 1, stride))
            weights_grad[:, :, ky, kx] = np.einsum("nfhw,nchw->fc", top, padded[taps])
            input_grad[taps] += np.einsum("nfhw,fc->nchw", top, kernel[:, :, ky, kx])
    return input_grad[:, :, pad:pad + h, pad:pad + w], weights_grad.reshape(weights.shape)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[1], SHAPES[2], SHAPES[3], SHAPES[5], SHAPES[6], SHAPES[7],
                                   SHAPES[8], SHAPES[9]],
                         ids=["winograd-odd", "winograd", "winograd-16-tiles", "im2col", "im2col-chunks-of-12",
                              "stride2-chunks-of-4", "1x1-chunks-of-3", "4-tiles-chunks-of-10",
                              "winograd-40-channels"])
@pytest.mark.parametrize("threads,batch", [(1, 3), (2, 3), (2, 1), (2, 5)])
def test_backward_matches_float64(tmp_path, shape, threads, batch):
    """The gradients to the input (Winograd with turned kernels on 3x3 stride-1 layers, else
    col2im) and to the weights, against the exact adjoint in float64. Batches below the thread
    count, and small maps, take the chunked GEMMs split over the threads; batch 5 gives the small
    maps a full chunk and a rest (of one image for stride 2 and 1x1: read in place)."""
    channels, filters, height, width, size, stride, _, _ = shape
    cfg = write_conv_cfg(tmp_path / "conv.cfg", channels, filters, height, width, size, stride, 0, "linear")
    rng = np.random.default_rng(13)
    x = rng.normal(0, 1, (batch, channels, height, width)).astype(np.float32)
    with dn.Network(cfg, batch=batch, seed=4, threads=threads) as net:
        top = rng.normal(0, 1, (batch,) + net.layers[0].output_shape).astype(np.float32)
        net.zero_grad()
        net.forward_train(x)
        input_grad = net.backward(top)
        weights_grad = net.get_parameter(0, "weights_grad")
        expected_input, expected_weights = reference_gradients(x, net.get_parameter(0, "weights"), top, size, stride)
    # F(4x4, 3x3) rounds to about 1e-5 of the values' size (input gradients up to ~3, summed
    # over 64 channels; weight gradients up to ~100, summed over every position of the batch)
    np.testing.assert_allclose(input_grad, expected_input, rtol=1e-5, atol=5e-5)
    np.testing.assert_allclose(weights_grad, expected_weights, rtol=1e-5, atol=1e-5 * np.abs(expected_weights).max())
