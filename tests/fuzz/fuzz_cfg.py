"""Fuzz target: the cfg parser, `Network(cfg)` on fuzzed text; small networks that parse also run
a forward pass and a training forward + backward, so that odd but valid geometries reach the layers."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402

import darknet_py as dn  # noqa: E402
from darknet_py import cfg as cfg_builder  # noqa: E402

NAME = "cfg"
TEXT = True
RUN_BELOW = 200_000  # values in all layer outputs together: bigger networks are only parsed
WORK_BELOW = 20_000_000  # ... and so are those whose forward pass is long (see work())


def work(net: dn.Network) -> int:
    """Multiply-adds (or comparisons) of one forward pass, roughly: a small output may still take
    long (a 255x255 kernel over a padded 16x16 input)."""
    total = 0
    for layer in net.layers:
        out = int(np.prod(layer.output_shape))
        if layer.type == "convolutional":
            total += out * (layer.input_shape[0] // max(layer.groups, 1)) * layer.size * layer.size
        elif layer.type == "maxpool":  # the engine visits only the taps inside the input
            total += out * min(layer.size * layer.size, layer.input_shape[1] * layer.input_shape[2])
        else:
            total += out
    return total


def one_input(data: bytes) -> None:
    path = _harness.scratch_file("fuzz.cfg", data)
    try:
        net = dn.Network(path, batch=2)
    except dn.DarknetError:
        return
    with net:
        assert net.width >= 1 and net.height >= 1 and net.channels >= 1
        total = 0
        for layer in net.layers:
            assert min(layer.input_shape) >= 1 and min(layer.output_shape) >= 1, layer
            total += int(np.prod(layer.output_shape))
        if total * 2 > RUN_BELOW or net.channels * net.width * net.height > RUN_BELOW or work(net) > WORK_BELOW:
            return
        blob = np.linspace(0, 1, 2 * net.channels * net.height * net.width, dtype=np.float32)
        blob = blob.reshape(2, net.channels, net.height, net.width)
        net.forward(blob)
        outputs = net.forward_train(blob)
        grad = net.backward(np.ones_like(outputs[-1]))
        assert grad.shape == blob.shape


def seeds() -> list[bytes]:
    directory = Path(tempfile.mkdtemp(prefix="seeds-cfg-"))
    out = []
    for arch in cfg_builder.ARCHITECTURES:
        for size in (64, 416):
            path = directory / f"{arch}-{size}.cfg"
            cfg_builder.write_cfg(path, arch, classes=2, width=size, height=size)
            out.append(path.read_bytes())
    net = "[net]\nwidth=16\nheight=16\nchannels=3\nbatch=2\nsubdivisions=1\n"
    conv = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=mish\n"
    out.append((net + conv + "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
                "[convolutional]\nfilters=8\nsize=1\ngroups=4\nactivation=swish\n[upsample]\nstride=2\n"
                "[shortcut]\nfrom=-5\nactivation=leaky\n[convolutional]\nfilters=14\nsize=1\nactivation=linear\n"
                "[yolo]\nmask=0,1\nanchors=2,2, 5,5\nclasses=2\nnum=2\nscale_x_y=1.1\niou_loss=ciou\n"
                "nms_kind=greedynms\n").encode())
    out.append((net + "policy=steps\nsteps=10,20\nscales=.1,.1\n" + conv + "[maxpool]\nsize=3\nstride=1\n"
                "padding=4\n[route]\nlayers=-1,-2\n").encode())
    return out


if __name__ == "__main__":
    _harness.main(sys.modules[__name__])
