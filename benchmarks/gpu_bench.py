"""One command on a CUDA machine: ResNet-18 (CIFAR) FP32 / FP16 / INT8 on every GPU backend present.

torch-cuda always (the bundle's graph rebuilt in torch: FP32, FP16; the INT8 Q/DQ graph runs
as fake-quant, which measures torch, not integer kernels); ONNX Runtime's CUDA provider when
onnxruntime-gpu is installed; TensorRT when it is installed (strongly typed engines from the
bundles). Records the GPU name, driver and clocks with the results.

    python benchmarks/gpu_bench.py [--batches 1,8,32,64,256] [--duration 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path


import torch

from common import export_variants, resnet18_random
from machine import save_result

from deploy_robust.bench import run_bench


def available_backends() -> list[str]:
    backends = ["torch-cuda"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        backends.append("ort-cuda")
    if importlib.util.find_spec("tensorrt"):
        backends.append("tensorrt")
    return backends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,8,32,64,256")
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU and a CUDA build of torch")
    batches = [int(b) for b in args.batches.split(",")]
    backends = available_backends()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundles = export_variants(
            resnet18_random(), Path(tmp), [("fp32", "tensorrt"), ("fp16", "tensorrt"), ("int8", "tensorrt")]
        )
        for backend in backends:
            documents = run_bench(list(bundles.values()), [backend], batches, duration=args.duration, rounds=3)
            for variant, doc in zip(bundles, documents):
                for e in doc["results"]:
                    rows.append({"backend": backend, "variant": variant, **{k: e[k] for k in e if k != "runtime"}})
                    print(
                        f"{backend:10s} {variant:14s} b{e['batch']:<4d} {e['throughput']:10.1f} img/s "
                        f"p50 {e['latency_ms']['p50']:.3f} ms",
                        flush=True,
                    )
    save_result("gpu_bench", rows, backends=backends)


if __name__ == "__main__":
    main()
