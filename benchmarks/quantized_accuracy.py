"""INT8 / INT4 bundles of the real robust checkpoints: accuracy, agreement with FP32, twin fidelity, size.

For each checkpoint in ../shared/data/models: export int8 and int4 for ort-cpu (calibrated
on 512 training images with the default MSE method) and int8 for tensorrt (run unfused on
the CPU), evaluate on the full test set with ONNX Runtime, and compare against the torch
FP32 model and against the bundle's own twin. Weights are rounded with GPTQ (the default);
INT8 and INT4 ort-cpu are also exported with round-to-nearest weights, same ranges and grid,
to show what the rounding buys, and INT8 ort-cpu with `--min-agreement 0.99` (layers kept FP32
until held-out training images agree). `--methods` adds a calibration-method sweep for INT8 ort-cpu.

    python benchmarks/quantized_accuracy.py [--methods minmax,percentile,entropy,mse]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.quant.twin import twin_module
from deploy_robust.runtimes import create_runner
from deploy_robust.runtimes.torch_runner import TorchRunner

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

MNIST = ("mnist_test.npz", "mnist_train_first17435.npz")
CIFAR = ("cifar10_test_first1017.npz", "cifar10_train_first1017_per_batch.npz")
MODELS = [
    ("mnist_cnn_a_adv.model", MNIST),
    ("MadryCNN_no_maxpool_tiny.pt", MNIST),
    ("convex_adversarial_mnist.pth", MNIST),
    ("cifar_cnn_a_adv.model", CIFAR),
    ("cifar_conv_small_pgd.pth", CIFAR),
    ("resnet2b.pth", CIFAR),
]
VARIANTS = [("int8", "ort-cpu"), ("int4", "ort-cpu"), ("int8", "tensorrt")]


def measure(checkpoint: str, sets: tuple[str, str], methods: list[str], tmp: Path) -> list[dict]:
    loaded = load_model(SHARED / "models" / checkpoint)
    test = load_dataset(SHARED / "datasets" / sets[0], loaded.spec.shape)
    calib = load_dataset(SHARED / "datasets" / sets[1], loaded.spec.shape)
    reference = evaluate(create_runner("torch", module=loaded.reference()), test)
    fp32 = export_bundle(loaded, tmp / "fp32", ExportOptions("fp32"))
    rows = []
    runs = (
        [(p, t, "mse", "gptq", None) for p, t in VARIANTS]
        + [(p, "ort-cpu", "mse", "nearest", None) for p in ("int8", "int4")]
        + [("int8", "ort-cpu", "mse", "gptq", 0.99)]
        + [("int8", "ort-cpu", m, "gptq", None) for m in methods if m != "mse"]
    )
    for precision, target, method, rounding, min_agreement in runs:
        bundle = export_bundle(
            loaded,
            tmp / f"{precision}-{target}-{method}-{rounding}-{min_agreement}",
            ExportOptions(
                precision,
                target,
                weight_rounding=rounding,
                min_agreement=min_agreement,
                calibration=CalibrationOptions(method=method),
            ),
            calib=calib,
        )
        engine = evaluate(create_runner("ort-cpu", bundle), test)
        twin = evaluate(TorchRunner(twin_module(bundle.model_path)), test)
        rows.append(
            {
                "model": checkpoint,
                "precision": precision,
                "target": target,
                "calib_method": method,
                "weight_rounding": rounding,
                "min_agreement": min_agreement,
                "kept_fp32": [k["layer"] for k in (bundle.manifest.precision.fallback or {}).get("kept_fp32", [])],
                "n": len(test),
                "fp32_accuracy": reference.accuracy,
                "accuracy": engine.accuracy,
                "delta_pt": 100 * (engine.accuracy - reference.accuracy),
                "top1_agreement_fp32": compare_logits(engine.logits, reference.logits).top1_agreement,
                "twin_engine_agreement": compare_logits(twin.logits, engine.logits).top1_agreement,
                "model_bytes": bundle.model_path.stat().st_size,
                "size_vs_fp32": bundle.model_path.stat().st_size / fp32.model_path.stat().st_size,
            }
        )
        print(
            f"{checkpoint} {precision} {target} {method} {rounding} min-agreement {min_agreement}: acc {100 * engine.accuracy:.2f} "
            f"(fp32 {100 * reference.accuracy:.2f}), agree {100 * rows[-1]['top1_agreement_fp32']:.2f}, "
            f"twin {100 * rows[-1]['twin_engine_agreement']:.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="minmax,percentile,entropy,mse")
    args = parser.parse_args()
    if not SHARED.exists():
        sys.exit("needs ../shared/data beside the repository")
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    for checkpoint, sets in MODELS:
        with tempfile.TemporaryDirectory() as tmp:
            rows += measure(checkpoint, sets, methods, Path(tmp))
    save_result("quantized_accuracy", rows, calibration="512 training images")
    print(
        "\n| model | precision / target | calib | rounding | FP32 acc | acc | delta (pt) | top-1 agree w/ FP32 | twin-engine agree | size vs FP32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['precision']} / {r['target']} | {r['calib_method']} | {r['weight_rounding']} | {100 * r['fp32_accuracy']:.2f}% | "
            f"{100 * r['accuracy']:.2f}% | {r['delta_pt']:+.2f} | {100 * r['top1_agreement_fp32']:.2f}% | "
            f"{100 * r['twin_engine_agreement']:.2f}% | {r['size_vs_fp32']:.3f} |"
        )


if __name__ == "__main__":
    main()
