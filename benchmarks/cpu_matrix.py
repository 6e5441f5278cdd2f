"""Precision x target x batch on the CPU: ResNet-18 (CIFAR) and the real checkpoints, ONNX Runtime.

Each model's bundles are measured interleaved in one `run_bench` call (3 rounds), so the
ratios within a model come from one run. The tensorrt-target bundle is included to show
what it costs on the CPU stand-in (run unfused, exact Q/DQ semantics), not TensorRT speed.

    python benchmarks/cpu_matrix.py [--batches 1,8,32,64] [--duration 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


from common import export_variants, resnet18_random, shared_model
from machine import save_result

from deploy_robust.bench import run_bench

VARIANTS = [("fp32", "ort-cpu"), ("fp16", "ort-cpu"), ("int8", "ort-cpu"), ("int4", "ort-cpu"), ("int8", "tensorrt")]
SHARED_MODELS = ["resnet2b.pth", "cifar_cnn_a_adv.model", "mnist_cnn_a_adv.model"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = [("resnet18", resnet18_random())] + [(n, shared_model(n)) for n in SHARED_MODELS]
    rows = []
    for name, loaded in models:
        if loaded is None:
            print(f"skipping {name}: ../shared/data not found")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            bundles = export_variants(loaded, Path(tmp), VARIANTS)
            documents = run_bench(
                list(bundles.values()), ["ort-cpu"], batches, threads=args.threads, duration=args.duration, rounds=3
            )
        fp32 = {e["batch"]: e["throughput"] for e in documents[0]["results"]}
        for variant, doc in zip(bundles, documents):
            for e in doc["results"]:
                rows.append(
                    {
                        "model": name,
                        "variant": variant,
                        "batch": e["batch"],
                        "throughput": e["throughput"],
                        "latency_ms": e["latency_ms"],
                        "x_fp32": e["throughput"] / fp32[e["batch"]],
                        "model_bytes": doc["bundle"]["model_bytes"],
                        "iterations": e["iterations"],
                    }
                )
                print(
                    f"{name:24s} {variant:14s} b{e['batch']:<3d} {e['throughput']:9.1f} img/s "
                    f"p50 {e['latency_ms']['p50']:.2f} ms  {rows[-1]['x_fp32']:.2f}x fp32",
                    flush=True,
                )
    save_result("cpu_matrix", rows, threads=args.threads, duration_s=args.duration, rounds=3)


if __name__ == "__main__":
    main()
