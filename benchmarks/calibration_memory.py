"""Peak memory of calibration does not grow with the number of calibration images.

Runs entropy calibration of resnet2b (INT8, ort-cpu) over N CIFAR-10 training images in a
fresh process for each N and reports that process's peak RSS. The calibrators keep one
fixed-size histogram per tensor and ONNX Runtime sees one batch at a time, so the peak
should be flat in N.

    python benchmarks/calibration_memory.py [--sizes 500,5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

CHILD = """
import resource, sys, tempfile, time
from deploy_robust.data import load_dataset
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.ingest import load_model
shared, n, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
loaded = load_model(shared + "/models/resnet2b.pth")
calib = load_dataset(shared + "/datasets/cifar10_train_first1017_per_batch.npz", loaded.spec.shape)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    export_bundle(loaded, tmp + "/b", ExportOptions("int8", calibration=CalibrationOptions(method, n)), calib=calib)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - start)
"""


def peak_rss_kib(n: int, method: str = "entropy") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(SHARED), str(n), method], capture_output=True, text=True, check=True
    ).stdout.split()
    before, peak, seconds = int(out[0]), int(out[1]), float(out[2])
    return {"images": n, "method": method, "rss_before_kib": before, "peak_rss_kib": peak, "seconds": round(seconds, 2)}


def main() -> None:
    from machine import save_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,5000")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit("needs ../shared/data beside the repository")
    rows = [peak_rss_kib(int(n)) for n in args.sizes.split(",")]
    ratio = rows[-1]["peak_rss_kib"] / rows[0]["peak_rss_kib"]
    save_result("calibration_memory", rows, peak_ratio_last_vs_first=ratio)
    for r in rows:
        print(
            f"{r['images']:>6} images: peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB "
            f"(before calibration {r['rss_before_kib'] / 1024:.0f} MiB), {r['seconds']} s"
        )
    print(f"peak ratio {rows[-1]['images']} vs {rows[0]['images']} images: {ratio:.3f}")


if __name__ == "__main__":
    main()
