"""The ort-cpu rule that keeps a narrow image-input conv in FP32, measured: INT8 / FP32 with the rule (the default)
and with that conv quantized too (a --plan naming it), on the real checkpoints, ONNX Runtime, 1 thread.

    python benchmarks/first_conv_rule.py [--threads 1] [--rounds 3] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

from common import SHARED, calibration_for, interleaved_throughput
from machine import save_result

from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.quant.plan import layer_name, weighted_nodes
from deploy_robust.runtimes import create_runner

HERE = Path(__file__).resolve().parent

MODELS = (
    "cifar_cnn_a_adv.model",
    "cifar_conv_small_pgd.pth",
    "resnet2b.pth",
    "mnist_cnn_a_adv.model",
    "MadryCNN_no_maxpool_tiny.pt",
    "convex_adversarial_mnist.pth",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    rows = []
    for name in MODELS:
        loaded = load_model(SHARED / "models" / name)
        calib = calibration_for(loaded)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            fp32 = export_bundle(loaded, root / "fp32")
            _, weight = next(iter(weighted_nodes(onnx.load(str(fp32.model_path)))))
            (root / "all.yaml").write_text(f'default: int8\nlayers:\n  "{layer_name(weight.name)}": int8\n')
            bundles = {
                "fp32": fp32,
                "int8 (rule: first conv FP32)": export_bundle(
                    loaded, root / "rule", ExportOptions("int8"), calib=calib
                ),
                "int8 (every conv quantized)": export_bundle(
                    loaded, root / "all", ExportOptions("mixed", plan_file=root / "all.yaml"), calib=calib
                ),
            }
            runners = {k: create_runner("ort-cpu", b, threads=args.threads) for k, b in bundles.items()}
            results = interleaved_throughput(runners, [1, 32], args.rounds, args.seconds, loaded.spec.shape)
        fp32_by = {r["batch"]: r["throughput_median"] for r in results if r["variant"] == "fp32"}
        for r in results:
            rows.append(
                {
                    "model": name,
                    "first_conv": list(weight.dims),
                    "variant": r["variant"],
                    "batch": r["batch"],
                    "throughput": r["throughput_median"],
                    "x_fp32": r["throughput_median"] / fp32_by[r["batch"]],
                }
            )
            print(
                f"{name:30s} {r['variant']:30s} bs{r['batch']:<3d} {r['throughput_median']:9.0f} "
                f"({r['throughput_median'] / fp32_by[r['batch']]:.2f}x FP32)",
                flush=True,
            )
    print(f"wrote {save_result('first_conv_rule', rows, threads=args.threads, rounds=args.rounds)}")


if __name__ == "__main__":
    main()
