"""verify's standard suite on the real robust checkpoints: FP32, INT8 and INT4 bundles, R / S / E figures.

500 test points each, at the eps each model was trained for; per-example worst case over all
attacks, scored on the ONNX Runtime engine; the reference R is the torch model.

    python benchmarks/verify_real_models.py [--n 500] [--suite standard]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


from common import SHARED, calibration_for, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

MODELS = [
    ("mnist_cnn_a_adv.model", "mnist_test.npz", 0.3),
    ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz", 2 / 255),
    ("resnet2b.pth", "cifar10_test_first1017.npz", 2 / 255),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--suite", default="standard")
    args = parser.parse_args()
    rows = []
    for checkpoint, test, eps in MODELS:
        loaded = shared_model(checkpoint)
        if loaded is None:
            sys.exit("needs ../shared/data")
        data = load_dataset(SHARED / "datasets" / test, loaded.spec.shape)
        with tempfile.TemporaryDirectory() as tmp:
            for precision in ("fp32", "int8", "int4"):
                bundle = export_bundle(
                    loaded, Path(tmp) / precision, ExportOptions(precision), calib=calibration_for(loaded, 512)
                )
                doc = run_verify(
                    bundle,
                    data,
                    ThreatModel("linf", eps),
                    VerifyOptions(n=args.n, suite=args.suite, sweep=None),
                    reference=loaded.reference(),
                )
                row = {
                    "model": checkpoint,
                    "precision": precision,
                    "eps": eps,
                    "n": args.n,
                    "suite": args.suite,
                    "clean_E": doc["clean_accuracy"],
                    "clean_S": doc["models"]["S"]["clean_accuracy"],
                    "clean_R": doc["models"]["R"]["clean_accuracy"],
                    "robust_E": doc["robust_accuracy"],
                    "robust_ci95": doc["robust_accuracy_ci95"],
                    "robust_gradient_attacks_only": doc["robust_accuracy_gradient_attacks_only"],
                    "attacks": {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]},
                    "broke": {a["attack"]: a["broke"] for a in doc["attacks"]},
                    "agreement_E_S_adversarial": doc["agreement_E_S_on_S_adversarial"],
                    "flags": [f["flag"] for f in doc["flags"]],
                    "seconds": doc["seconds"],
                }
                rows.append(row)
                print(
                    f"{checkpoint} {precision}: clean {100 * row['clean_E']:.1f}% robust {100 * row['robust_E']:.1f}% "
                    f"[{100 * row['robust_ci95'][0]:.1f}, {100 * row['robust_ci95'][1]:.1f}] "
                    f"transfer-from-R broke {row['broke'].get('transfer-apgd-ce')} "
                    f"flags {row['flags']} ({row['seconds']:.0f} s)",
                    flush=True,
                )
    save_result("verify_real_models", rows)


if __name__ == "__main__":
    main()
