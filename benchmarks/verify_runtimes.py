"""verify on the engine as configured: the same ResNet-18 bundles verified on ONNX Runtime and on OpenVINO
(its default hint, which runs float layers in bf16 on AMX CPUs, and f32), on the same points and seed.

    python benchmarks/verify_runtimes.py [--n 100] [--suite quick] [--eps 2/255]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import SHARED, calibration_for
from machine import save_result
from runtime_matrix import load

from deploy_robust.data import load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.runtimes import RuntimeOptions
from deploy_robust.verify import ThreatModel, parse_eps, run_verify
from deploy_robust.verify.options import VerifyOptions

HERE = Path(__file__).resolve().parent

ENGINES = (
    ("ort-cpu", None),
    ("openvino", RuntimeOptions(precision_hint="default")),
    ("openvino", RuntimeOptions(precision_hint="f32")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--eps", default="2/255")
    args = parser.parse_args()
    loaded, weights = load("resnet18")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", loaded.spec.shape)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "int8"):
            bundle = export_bundle(
                loaded, Path(tmp) / precision, ExportOptions(precision), calib=calibration_for(loaded)
            )
            for backend, options in ENGINES:
                doc = run_verify(
                    bundle,
                    data,
                    ThreatModel("linf", parse_eps(args.eps)),
                    VerifyOptions(
                        n=args.n, suite=args.suite, backend=backend, sweep=None, resume=False, runtime=options
                    ),
                )
                execution = doc["engine_execution"]
                row = {
                    "precision": precision,
                    "backend": backend,
                    "hint": options.precision_hint if options else None,
                    "executed_precision": execution["executed_precision"],
                    "clean_accuracy": doc["clean_accuracy"],
                    "robust_accuracy": doc["robust_accuracy"],
                    "robust_accuracy_ci95": doc["robust_accuracy_ci95"],
                    "attacks": {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]},
                    "seconds": doc["seconds"],
                }
                rows.append(row)
                print(
                    f"{precision} {backend} {row['hint']}: executed {row['executed_precision']}, clean "
                    f"{100 * row['clean_accuracy']:.1f}%, robust {100 * row['robust_accuracy']:.1f}% "
                    f"({doc['seconds']:.0f} s)",
                    flush=True,
                )
    out = save_result("verify_runtimes", rows, model=f"resnet18 ({weights})", n=args.n, suite=args.suite, eps=args.eps)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
