"""Forward-pass speed of darknet_py against OpenCV DNN's darknet importer and, on the model
darknet_py exports to ONNX, ONNX Runtime and OpenVINO (when installed), in one process.

Prints milliseconds per image (median of several runs) at batch 1 and batch 8 and, for each
other runtime, the ratio darknet_py / that runtime (above 1 means darknet_py is slower). Where the
CPU has AVX512-BF16, darknet_py bf16 (Network(precision="bf16"); on oneDNN in a DARKNET_PY_ONEDNN=1
build) and OpenVINO bf16 run too, the bf16 ratio against OpenVINO bf16. Random weights: speed does not depend on the values. The ONNX
model is the `raw` export with a dynamic batch (the same work as the engine's forward: the
network up to its [yolo] heads). Every runtime uses all the CPUs it may (darknet_py:
DARKNET_PY_THREADS, else all).

    python benchmarks/forward.py [--repeats 5] [--arch yolov4-tiny yolov4] [--batch 1 8]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import darknet_py as dn
from darknet_py import cfg as cfg_builder
from darknet_py.network import resolve_threads


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: first-touch page faults, BLAS thread start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


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


def bench(arch: str, size: int, batches: list[int], repeats: int, workdir: Path) -> dict[int, dict[str, float]]:
    """{batch: {runtime: ms per image}}."""
    cfg = workdir / f"{arch}.cfg"
    cfg_builder.write_cfg(cfg, arch, classes=80, width=size, height=size)
    weights = workdir / f"{arch}.weights"
    with dn.Network(cfg, seed=1) as net:
        net.save_weights(weights)
    model = workdir / f"{arch}.onnx"
    rng = np.random.default_rng(0)
    blobs = {n: rng.random((n, 3, size, size), dtype=np.float32) for n in batches}
    times: dict[int, dict[str, float]] = {n: {} for n in batches}
    bf16 = dn.precision_supported("bf16")
    with dn.Network(cfg, weights, batch=max(batches)) as net:
        for precision in ("fp32", "bf16") if bf16 else ("fp32",):
            net.precision = precision
            for n in batches:
                name = "darknet_py" + ("" if precision == "fp32" else " bf16")
                times[n][name] = median_ms(lambda: net.forward(blobs[n]), repeats) / n
        net.precision = "fp32"
        net.export_onnx(model, outputs="raw", dynamic_batch=True)
    cv_net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    names = cv_net.getUnconnectedOutLayersNames()
    for n in batches:
        def opencv_forward() -> None:
            cv_net.setInput(blobs[n])
            cv_net.forward(names)

        times[n]["OpenCV DNN"] = median_ms(opencv_forward, repeats) / n
    for name, run in onnx_runtimes(model, bf16).items():
        for n in batches:
            times[n][name] = median_ms(lambda: run(blobs[n]), repeats) / n
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
    parser.add_argument("--repeats", type=int, default=5)
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
            for n, times in bench(arch, args.size, args.batch, args.repeats, Path(tmp)).items():
                print(f"{arch}-{args.size} batch {n}, ms per image: " + "; ".join(
                    f"{name} {ms:.1f}" + ("" if name.startswith("darknet_py") else f" (ratio {ratio(times, name):.2f})")
                    for name, ms in times.items()))


if __name__ == "__main__":
    main()
