"""Two back-to-back `bench` runs of the same bundle agree within 5% at the median (issue figure).

python benchmarks/repeatability.py [--duration 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


from common import export_variants, resnet18_random
from machine import save_result

from deploy_robust.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundles = export_variants(resnet18_random(), Path(tmp), [("fp32", "ort-cpu"), ("int8", "ort-cpu")])
        for variant, bundle in bundles.items():
            runs = [
                run_bench([bundle], ["ort-cpu"], batches, threads=args.threads, duration=args.duration)[0]
                for _ in range(2)
            ]
            for batch in batches:
                medians = [next(e["latency_ms"]["p50"] for e in r["results"] if e["batch"] == batch) for r in runs]
                spread = abs(medians[0] - medians[1]) / min(medians)
                rows.append(
                    {
                        "variant": variant,
                        "batch": batch,
                        "p50_ms_run1": medians[0],
                        "p50_ms_run2": medians[1],
                        "spread": spread,
                        "within_5pct": spread <= 0.05,
                    }
                )
                print(
                    f"resnet18 {variant:14s} batch {batch:<3d} p50 {medians[0]:.2f} ms vs {medians[1]:.2f} ms: "
                    f"spread {100 * spread:.1f}%",
                    flush=True,
                )
    save_result(
        "repeatability", rows, model="resnet18 (CIFAR, random init)", duration_s=args.duration, threads=args.threads
    )


if __name__ == "__main__":
    main()
