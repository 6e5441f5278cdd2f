"""Throughput of FP32, our INT8 / INT4 `ort-cpu` bundles and ONNX Runtime's quantize_static (defaults).

ResNet-18 (CIFAR), batch 1 and 32, ONNX Runtime on the CPU. All variants run interleaved
in the same process and rounds (this machine is shared and noisy), median of rounds.
Weights are a fixed random initialization (speed does not depend on their values);
calibration uses CIFAR-10 training images from ../shared/data when present.

    python benchmarks/quantized_speed.py [--threads 2] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


from common import calibration_for, interleaved_throughput, resnet18_random
from machine import save_result

from deploy_robust.data import Dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner

HERE = Path(__file__).resolve().parent


def ort_quantize_static_default(fp32_path: Path, calib: Dataset, out: Path) -> Path:
    """ONNX Runtime's own static quantization with its default settings (QDQ, S8S8, min-max)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x} for x, _ in calib.batches(32)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32_path), str(out), Reader())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()
    loaded = resnet18_random()
    calib = calibration_for(loaded)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {
            "fp32": export_bundle(loaded, tmp / "fp32", ExportOptions("fp32")).model_path,
            "int8 ort-cpu (ours)": export_bundle(
                loaded, tmp / "int8", ExportOptions("int8", "ort-cpu"), calib=calib
            ).model_path,
            "int4 ort-cpu (ours)": export_bundle(
                loaded, tmp / "int4", ExportOptions("int4", "ort-cpu"), calib=calib
            ).model_path,
        }
        paths["ort quantize_static (default)"] = ort_quantize_static_default(
            paths["fp32"], calib, tmp / "ort_static.onnx"
        )
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        runners = {name: OnnxRuntimeRunner(path, threads=args.threads) for name, path in paths.items()}
        for r in runners.values():
            r.activate()
        results = interleaved_throughput(runners, [int(b) for b in args.batches.split(",")], args.rounds, args.seconds)
        for r in results:
            r["model_bytes"] = sizes[r["variant"]]
    by = {(r["variant"], r["batch"]): r for r in results}
    for r in results:
        fp32 = by[("fp32", r["batch"])]["throughput_median"]
        ort_default = by[("ort quantize_static (default)", r["batch"])]["throughput_median"]
        r["x_fp32"] = r["throughput_median"] / fp32
        r["x_ort_quantize_static"] = r["throughput_median"] / ort_default
        r["size_vs_fp32"] = r["model_bytes"] / by[("fp32", r["batch"])]["model_bytes"]
    out = save_result(
        "quantized_speed",
        results,
        model="resnet18 (CIFAR, random init)",
        threads=args.threads,
        rounds=args.rounds,
        seconds_per_round=args.seconds,
    )
    print("| variant | batch | images/s (median) | x FP32 | x ORT quantize_static | model.onnx | size vs FP32 |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['variant']} | {r['batch']} | {r['throughput_median']:.0f} | {r['x_fp32']:.2f} | "
            f"{r['x_ort_quantize_static']:.2f} | {r['model_bytes'] / 2**20:.1f} MB | {r['size_vs_fp32']:.3f} |"
        )
    print(f"\nwritten {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
