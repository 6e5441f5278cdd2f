"""PGD adversarial training against clean training of a small CIFAR-10 model, and its reproducibility.

Trains CNN-A (the architecture of ../shared/data's cifar_cnn_a_adv, from scratch) on the
shared CIFAR-10 training subset (5,085 images) three times with `deploy-robust train`:
clean, PGD-7 at L-inf 2/255, and PGD again with the same seed. Each run reports clean and
PGD-20 (2 restarts) accuracy at 2/255 on the first N shared test images; the two PGD runs
must produce byte-identical weights. Then both models are verified on the ONNX engine.

    python benchmarks/adversarial_training.py [--epochs 20] [--n 500]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from common import CIFAR_CALIB, SHARED
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import MODEL_KEY
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

HERE = Path(__file__).resolve().parent

TEST = SHARED / "datasets" / "cifar10_test_first1017.npz"


def train(out: Path, adv: str, epochs: int, n: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "deploy_robust",
        "train",
        "--arch",
        "cifar_cnn_a_adv",
        "--data",
        str(CIFAR_CALIB),
        "--test",
        str(TEST),
        "--eval-n",
        str(n),
        "--adv",
        adv,
        "--eps",
        "2/255",
        "--epochs",
        str(epochs),
        "--augment",
        "--seed",
        "0",
        "-o",
        str(out),
    ]
    subprocess.run(command, check=True)
    return command


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    test = load_dataset(TEST, (3, 32, 32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "clean": Path(tmp) / "clean.pt",
            "pgd": Path(tmp) / "pgd.pt",
            "pgd (same seed, again)": Path(tmp) / "pgd2.pt",
        }
        digests = {}
        for name, path in runs.items():
            command = train(path, "none" if name == "clean" else "pgd", args.epochs, args.n)
            doc = torch.load(path, weights_only=True)
            digests[name] = hashlib.sha256(
                b"".join(t.numpy().tobytes() for t in doc["state_dict"].values())
            ).hexdigest()
            training = doc[MODEL_KEY]["training"]
            shown = " ".join(["deploy-robust", *command[3:-1], path.name]).replace(str(SHARED), "../shared/data")
            row = {
                "run": name,
                "command": shown,
                "seconds": training["seconds"],
                "training_eval": training["evaluation"],
                "weights_sha256": digests[name],
            }
            if name != "pgd (same seed, again)":
                bundle = export_bundle(load_model(path), Path(tmp) / f"bundle_{len(rows)}", ExportOptions("fp32"))
                verified = run_verify(
                    bundle, test, ThreatModel("linf", 2 / 255), VerifyOptions(n=args.n, suite="quick", sweep=None)
                )
                row["verify"] = {
                    "clean": verified["clean_accuracy"],
                    "robust": verified["robust_accuracy"],
                    "robust_ci95": verified["robust_accuracy_ci95"],
                    "suite": "quick",
                    "n": args.n,
                }
            rows.append(row)
            e = training["evaluation"]
            print(
                f"{name}: clean {100 * e['clean']:.1f}%, {e['attack']} {100 * e['pgd']:.1f}% "
                f"({training['seconds']:.0f} s) weights {digests[name][:12]}",
                flush=True,
            )
    save_result(
        "adversarial_training",
        rows,
        epochs=args.epochs,
        reproducible=digests["pgd"] == digests["pgd (same seed, again)"],
    )


if __name__ == "__main__":
    main()
