"""Robustness-aware calibration, tested: do activation ranges calibrated on adversarial as well as clean images
keep an INT8 engine more robust than ranges from clean images alone?

Issue 19 asks for it as an option "kept only if it helps". For each model: INT8 ort-cpu bundles calibrated
on (a) 256 clean training images, and (b) the same 256 images, half of them replaced by PGD-10 points of the
FP32 model at the threat's eps (the same count, so only the content differs), and (c) 256 clean plus their 256
PGD points. Each is verified with the standard suite on 500 test points, paired against the FP32 bundle on the
same points (robust and clean drop, with the 95% interval for paired proportions).

    python benchmarks/robust_calibration.py [--n 500] [--suite standard]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


from common import CIFAR_CALIB, MNIST_CALIB, SHARED, shared_model
from machine import save_result

from deploy_robust.data import Dataset, load_dataset
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.tune.measure import paired_drop
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.attacks import pgd

MODELS = [
    ("cifar_cnn_a_adv.model", 2 / 255, "cifar10_test_first1017.npz"),
    ("resnet2b.pth", 2 / 255, "cifar10_test_first1017.npz"),
    ("mnist_cnn_a_adv.model", 0.3, "mnist_test.npz"),
]


def adversarial_points(loaded, clean: Dataset, threat: ThreatModel, seed: int = 0) -> Dataset:
    """PGD-10 points of the FP32 model on `clean`, as a float dataset with the same labels."""
    x = torch.from_numpy(clean.as_float())
    y = torch.from_numpy(clean.labels)
    adv = pgd(loaded.reference(), x, y, threat, steps=10, seed=seed).numpy()
    return Dataset(np.clip(adv, 0, 1), clean.labels.copy(), f"{clean.name}+pgd")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--only")
    args = parser.parse_args()
    rows = []
    root = Path(tempfile.mkdtemp(prefix="robust-calib-"))
    for checkpoint, eps, test in MODELS:
        if args.only and checkpoint != args.only:
            continue
        loaded = shared_model(checkpoint)
        if loaded is None:
            sys.exit("needs ../shared/data")
        threat = ThreatModel("linf", eps)
        calib_path = MNIST_CALIB if loaded.spec.shape[0] == 1 else CIFAR_CALIB
        clean = load_dataset(calib_path, loaded.spec.shape, split="train").take(256)
        adv = adversarial_points(loaded, clean, threat)
        half = Dataset(np.concatenate([clean.as_float()[:128], adv.images[128:]]), clean.labels, "half-pgd")
        both = Dataset(
            np.concatenate([clean.as_float(), adv.images]), np.concatenate([clean.labels, adv.labels]), "clean+pgd"
        )
        data = load_dataset(SHARED / "datasets" / test, loaded.spec.shape)
        fp32 = export_bundle(loaded, root / checkpoint / "fp32")
        started = time.perf_counter()
        reference = run_verify(fp32, data, threat, VerifyOptions(n=args.n, suite=args.suite, sweep=None, resume=False))
        row = {
            "model": checkpoint,
            "eps": eps,
            "n": args.n,
            "suite": args.suite,
            "fp32": {"robust": reference["robust_accuracy"], "clean": reference["clean_accuracy"]},
        }
        for name, calib in (("clean 256", clean), ("128 clean + 128 pgd", half), ("256 clean + 256 pgd", both)):
            bundle = export_bundle(
                loaded,
                root / checkpoint / name.replace(" ", "_"),
                ExportOptions("int8", "ort-cpu", calibration=CalibrationOptions(n=len(calib))),
                calib=calib,
            )
            doc = run_verify(bundle, data, threat, VerifyOptions(n=args.n, suite=args.suite, sweep=None, resume=False))
            row[name] = {
                "robust": doc["robust_accuracy"],
                "clean": doc["clean_accuracy"],
                "robust_drop": paired_drop(reference, doc, "robust"),
                "clean_drop": paired_drop(reference, doc, "clean"),
                "int8_weights": bundle.manifest.precision.int8_weights,
            }
            print(
                f"{checkpoint} {name}: robust {100 * doc['robust_accuracy']:.1f}% "
                f"(drop {100 * row[name]['robust_drop']['drop']:+.1f} pt), clean {100 * doc['clean_accuracy']:.1f}%",
                flush=True,
            )
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        save_result("robust_calibration", rows)


if __name__ == "__main__":
    main()
