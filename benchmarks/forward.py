"""Forward-pass speed of darknet_py against OpenCV DNN's darknet importer and, on the model
darknet_py exports to ONNX, ONNX Runtime and OpenVINO (when installed), in one process.

Prints milliseconds per image (median of 2 runs in each of several rounds, the runtimes taking
turns in every round: see interleaved_ms) at batch 1 and batch 8 and, for each
other runtime, the ratio darknet_py / that runtime (above 1 means darknet_py is slower). Where the
CPU has AVX512-BF16, darknet_py bf16 (Network(precision="bf16"); on oneDNN in a DARKNET_PY_ONEDNN=1
build) and OpenVINO bf16 run too, the bf16 ratio against OpenVINO bf16. Random weights: speed does not depend on the values. The ONNX
model is the `raw` export with a dynamic batch (the same work as the engine's forward: the
network up to its [yolo] heads). Every runtime uses all the CPUs it may (darknet_py:
DARKNET_PY_THREADS, else all).

    python benchmarks/forward.py [--rounds 5] [--arch yolov4-tiny yolov4] [--batch 1 8]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder
from darknet_py.network import resolve_threads


def interleaved_ms(runs: dict[str, Callable[[], object]], rounds: int, burst: int = 2) -> dict[str, float]:
    """name -> median milliseconds of runs[name](), over `rounds` rounds in which every runtime
    takes its turn: one untimed run, then `burst` timed ones back to back.

    Turns spread a shared machine's drift (one runtime's own time has moved 2x within the hour)
    over all runtimes instead of on whichever ran during a slow spell. The untimed run restores
    each runtime's steady state: the previous runtime's threads spin-wait for work a while after
    a run (OpenVINO's, ONNX Runtime's), and would take the cores from a run timed right after
    them; a pause instead lets threads that sleep (OpenCV's, the engine's) fall asleep, and the
    runtimes measured 20-30 % apart depending on which of the two was chosen."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            run()
            for _ in range(burst):
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def onnx_runtimes(model: Path, bf16: bool) -> dict[str, object]:
    """name -> a function running `model` on a blob, for each ONNX runtime that is installed
    (and OpenVINO bf16 when `bf16`)."""
    runs: dict[str, object] = {}
    try:
        import onnxruntime as ort
    except ImportError:
        pass
    else:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        runs["ONNX Runtime"] = lambda blob: session.run(None, {"images": blob})
    try:
        import openvino as ov
    except ImportError:
        pass
    else:
        core = ov.Core()
        for name, hint in [("OpenVINO", "f32")] + ([("OpenVINO bf16", "bf16")] if bf16 else []):
            request = core.compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": hint}).create_infer_request()
            runs[name] = lambda blob, request=request: request.infer({"images": blob})
    return runs


def bench(arch: str, size: int, batches: list[int], rounds: int, workdir: Path) -> dict[int, dict[str, float]]:
    """{batch: {runtime: ms per image}}."""
    cfg = workdir / f"{arch}.cfg"
    cfg_builder.write_cfg(cfg, arch, classes=80, width=size, height=size)
    weights = workdir / f"{arch}.weights"
    with dn.Network(cfg, seed=1) as net:
        net.save_weights(weights)
    model = workdir / f"{arch}.onnx"
    rng = np.random.default_rng(0)
    bf16 = dn.precision_supported("bf16")
    with contextlib.ExitStack() as stack:
        nets = {"darknet_py": stack.enter_context(dn.Network(cfg, weights, batch=max(batches)))}
        if bf16:
            nets["darknet_py bf16"] = stack.enter_context(
                dn.Network(cfg, weights, batch=max(batches), precision="bf16"))
        nets["darknet_py"].export_onnx(model, outputs="raw", dynamic_batch=True)
        cv_net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        names = cv_net.getUnconnectedOutLayersNames()
        others = onnx_runtimes(model, bf16)
        times: dict[int, dict[str, float]] = {}
        for n in batches:
            blob = rng.random((n, 3, size, size), dtype=np.float32)

            def opencv_forward(blob: np.ndarray = blob) -> None:
                cv_net.setInput(blob)
                cv_net.forward(names)

            runs: dict[str, Callable[[], object]] = {
                name: (lambda net=net, blob=blob: net.forward(blob)) for name, net in nets.items()}
            runs["OpenCV DNN"] = opencv_forward
            runs.update({name: (lambda run=run, blob=blob: run(blob)) for name, run in others.items()})
            times[n] = {name: ms / n for name, ms in interleaved_ms(runs, rounds).items()}
    return times


def cpu_model() -> str:
    """The CPU's name, family/model and the vector extensions that matter here (a VM may name
    only "AMD EPYC": family 25 is Zen 3/4, 26 Zen 5)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first CPU is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    extensions = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                                          ("AMX", "amx_tile")) if flag in flags]
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')}; {', '.join(extensions) or 'no AVX2'})")


def ratio(times: dict[str, float], name: str) -> float:
    """darknet_py / runtime `name`: bf16 against bf16, everything else against darknet_py fp32."""
    ours = times["darknet_py bf16"] if name.endswith(" bf16") else times["darknet_py"]
    return ours / times[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arch", nargs="+", default=["yolov4-tiny", "yolov4"])
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); darknet_py {dn.__version__} "
          f"({resolve_threads()} threads; bf16 on {dn.bf16_backend()})")
    print(f"CPU: {cpu_model()}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            for n, times in bench(arch, args.size, args.batch, args.rounds, Path(tmp)).items():
                print(f"{arch}-{args.size} batch {n}, ms per image: " + "; ".join(
                    f"{name} {ms:.1f}" + ("" if name.startswith("darknet_py") else f" (ratio {ratio(times, name):.2f})")
                    for name, ms in times.items()))


if __name__ == "__main__":
    main()
