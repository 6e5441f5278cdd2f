"""Feature squeezing on the robust checkpoints of ../shared/data, verified adaptively.

Per model (squeezers as Xu, Evans and Qi 2018 chose them: MNIST 1-bit depth + 2x2 median,
CIFAR-10 5-bit depth + 2x2 median; L-inf at the eps each model was trained for; first N test points):

- squeeze mode (the classifier sees squeezed inputs): verify with plain gradients
  (`--no-bpda`: what the squeezers' zero gradients make attacks report) and with BPDA;
- detect mode (the classifier sees the input; threshold for 5% false positives on clean
  training images): false-positive rate on the test points, detection rate of an attack
  that ignores the detector, robust accuracy against one that must stay under the threshold;
- base: the undefended model under the same suite.

    python benchmarks/defense_squeeze.py [--n 500] [--suite quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import CIFAR_CALIB, MNIST_CALIB, SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.defenses.squeeze import apply_squeezing
from deploy_robust.export import export_bundle
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

CASES = [
    ("mnist_cnn_a_adv.model", "mnist_test.npz", MNIST_CALIB, 0.3, "bits:1,median:2"),
    ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz", CIFAR_CALIB, 2 / 255, "bits:5,median:2"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--suite", default="quick")
    args = parser.parse_args()
    rows = []
    for model_file, test_file, calib_file, eps, squeezers in CASES:
        loaded = shared_model(model_file)
        if loaded is None:
            sys.exit("needs ../shared/data")
        test = load_dataset(SHARED / "datasets" / test_file, loaded.spec.shape)
        calib = load_dataset(calib_file, loaded.spec.shape)
        threat = ThreatModel("linf", eps)
        root = Path(tempfile.mkdtemp())
        bundles = {
            "base": export_bundle(loaded, root / "base"),
            "squeeze": export_bundle(apply_squeezing(loaded, squeezers, "squeeze"), root / "squeeze"),
            "detect": export_bundle(apply_squeezing(loaded, squeezers, "detect", calib), root / "detect"),
        }
        row = {"model": model_file, "eps": eps, "squeezers": squeezers, "n": args.n, "suite": args.suite}
        run = dict(n=args.n, suite=args.suite, sweep=None, resume=False)
        for name, bpda in (("base", True), ("squeeze_no_bpda", False), ("squeeze", True)):
            doc = run_verify(bundles[name.split("_")[0]], test, threat, VerifyOptions(bpda=bpda, **run))
            row[name] = {
                "clean_accuracy": doc["clean_accuracy"],
                "robust_accuracy": doc["robust_accuracy"],
                "robust_accuracy_ci95": doc["robust_accuracy_ci95"],
                "gradient_attacks_only": doc["robust_accuracy_gradient_attacks_only"],
                "flags": [f["flag"] for f in doc["flags"]],
                "seconds": doc["seconds"],
            }
            print(
                f"{model_file} {name}: clean {100 * doc['clean_accuracy']:.1f}%, robust {100 * doc['robust_accuracy']:.1f}% "
                f"(gradient attacks alone {100 * doc['robust_accuracy_gradient_attacks_only']:.1f}%), "
                f"flags {row[name]['flags']}",
                flush=True,
            )
        doc = run_verify(bundles["detect"], test, threat, VerifyOptions(**run))
        row["detect"] = doc["detector"] | {
            "clean_accuracy": doc["clean_accuracy"],
            "threshold_set_on": bundles["detect"].manifest.defense.fields["threshold_set_on"],
        }
        d = row["detect"]
        print(
            f"{model_file} detect: FPR {100 * d['false_positive_rate_on_test']:.1f}%, detection rate "
            f"{100 * d['unaware_attack']['detection_rate']:.1f}%, aware robust "
            f"{100 * d['robust_accuracy_detector_aware']:.1f}%",
            flush=True,
        )
        rows.append(row)
    print(save_result("defense_squeeze", rows))


if __name__ == "__main__":
    main()
