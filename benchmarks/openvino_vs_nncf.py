"""ResNet-18 INT8 on OpenVINO: our bundle (INT8 and INT4) against NNCF's INT8 of the same FP32 ONNX, 1 and 2
streams, batch 1/32/64, interleaved in one run; and where the time goes (OpenVINO's own per-layer counters).

    python benchmarks/openvino_vs_nncf.py [--rounds 3] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import calibration_for, interleaved_throughput
from machine import save_result
from runtime_matrix import load, nncf_int8

from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.runtimes.openvino_runner import OpenVINORunner

HERE = Path(__file__).resolve().parent

GMAC_PER_IMAGE = 0.556  # CIFAR ResNet-18 (3x3 stem), convolutions and FC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    loaded, weights = load("resnet18")
    calib = calibration_for(loaded)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        int8 = export_bundle(loaded, root / "int8", ExportOptions("int8"), calib=calib)
        int4 = export_bundle(loaded, root / "int4", ExportOptions("int4"), calib=calib)
        ir = nncf_int8(export_bundle(loaded, root / "fp32").model_path, calib, root / "nncf.xml")
        runners = {}
        for streams in (1, 2):
            options = RuntimeOptions(threads=args.threads, streams=streams, cache=False)
            runners[f"ours int8, {streams} stream(s)"] = create_runner("openvino", int8, options=options)
            runners[f"ours int4, {streams} stream(s)"] = create_runner("openvino", int4, options=options)
            runners[f"NNCF int8, {streams} stream(s)"] = OpenVINORunner(ir, options)
        for runner in runners.values():
            runner.activate()
        rows = interleaved_throughput(runners, [1, 32, 64], args.rounds, args.seconds)
        x = np.zeros((32, *loaded.spec.shape), np.float32)
        profiles = {}
        for name in ("ours int8, 1 stream(s)", "NNCF int8, 1 stream(s)"):
            layers = runners[name].layer_profile(x, repeats=5)
            total = sum(r["ms"] for r in layers)
            by_kernel: dict[str, float] = defaultdict(float)
            for r in layers:
                by_kernel[f"{r['op']} {r['kernel']}"] += r["ms"]
            profiles[name] = {
                "layer_ms_per_batch32": total,
                "by_kernel_share": {k: v / total for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1])[:6]},
            }
    for r in rows:
        r["tmac_per_s"] = r["throughput_median"] * GMAC_PER_IMAGE / 1e3
        print(
            f"{r['variant']:28s} bs{r['batch']:<3d} {r['throughput_median']:7.0f} img/s  {r['tmac_per_s']:.2f} TMAC/s"
        )
    for name, p in profiles.items():
        print(name, {k: f"{100 * v:.1f}%" for k, v in p["by_kernel_share"].items()})
    out = save_result(
        "openvino_vs_nncf",
        rows,
        model=f"resnet18 ({weights})",
        threads=args.threads,
        rounds=args.rounds,
        profiles=profiles,
        gmac_per_image=GMAC_PER_IMAGE,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
