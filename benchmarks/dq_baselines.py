"""Defensive Quantization against its baselines, every row verified on the exported engine.

For each shared robust model and each bit width W/A:
  - FP32: the original model, exported FP32;
  - PTQ: the same quantizers with calibrated bounds and no training (`dq --epochs 0`);
  - QAT: quantization-aware PGD fine-tuning without the regularizer (`dq --beta 0 --adv-train`);
  - DQ: the same fine-tuning with the Lipschitz regularizer (`dq --beta B --adv-train`), for each B;
and, at 8 bits, the exporter's own calibrated INT8 (`export --precision int8`, MSE ranges).
Every model is exported for ort-cpu and run through `deploy-robust verify` (per-example worst
case over FGSM, PGD-CE and PGD-margin on the twin with straight-through gradients, Square on
the engine, transfer from the original model), L-inf, on the first N test images.
Fine-tuning uses PGD adversarial training at the model's training eps (MNIST 0.3, CIFAR-10
2/255) on the shared training subsets; same seed, epochs and learning rate for QAT and DQ.

    python benchmarks/dq_baselines.py [--models mnist,cifar] [--bits 8/8,4/4,2/2] [--betas 3e-4,3e-3] [--n 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import CIFAR_CALIB, MNIST_CALIB, SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import save_model_file
from deploy_robust.train import pgd_training
from deploy_robust.transforms.dq import DQRequest, defensive_quantization
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

HERE = Path(__file__).resolve().parent

SETUPS = {  # name -> (checkpoint, train, test, training eps, verify eps, epochs)
    "mnist": ("mnist_cnn_a_adv.model", MNIST_CALIB, SHARED / "datasets" / "mnist_test.npz", 0.3, (0.3,), 3),
    "cifar": (
        "cifar_cnn_a_adv.model",
        CIFAR_CALIB,
        SHARED / "datasets" / "cifar10_test_first1017.npz",
        2 / 255,
        (2 / 255, 8 / 255),
        8,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mnist,cifar")
    parser.add_argument("--bits", default="8/8,4/4,2/2")
    parser.add_argument("--betas", default="3e-4,3e-3")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        checkpoint, train_path, test_path, train_eps, eps_list, epochs = SETUPS[name]
        original = shared_model(checkpoint)
        if original is None:
            print(f"skipping {name}: ../shared/data not found")
            continue
        train = load_dataset(train_path, original.spec.shape, split="train")
        test = load_dataset(test_path, original.spec.shape)
        with tempfile.TemporaryDirectory() as tmp:
            variants = [("FP32", "fp32", None, None, original)]
            exported_int8 = ("PTQ (exporter int8, MSE ranges)", "8/8", None, None, original)
            for bits in args.bits.split(","):
                w_bits, a_bits = (int(b) for b in bits.split("/"))
                if bits == "8/8":
                    variants.append(exported_int8)
                settings = (
                    [("PTQ", 0, 0.0)]
                    + [("QAT", epochs, 0.0)]
                    + [(f"DQ beta={beta}", epochs, float(beta)) for beta in args.betas.split(",")]
                )
                for method, n_epochs, beta in settings:
                    request = DQRequest(
                        w_bits,
                        a_bits,
                        beta,
                        n_epochs,
                        args.lr,
                        128,
                        512,
                        pgd_training(train_eps, steps=7) if n_epochs else None,
                        seed=0,
                    )
                    started = time.perf_counter()
                    module, config, report = defensive_quantization(original, train, request)
                    path = save_model_file(
                        Path(tmp) / f"{name}_{len(variants)}.pt",
                        module,
                        original.source["arch"],
                        original.spec,
                        report,
                        dq=config.to_json(),
                    )
                    seconds = time.perf_counter() - started
                    print(f"{name} {bits} {method}: trained in {seconds:.0f} s", flush=True)
                    variants.append((method, bits, report, seconds, load_model(path)))
            for method, bits, report, seconds, loaded in variants:
                precision = "fp32" if bits == "fp32" else "int8"
                calib = train if loaded is original and precision == "int8" else None
                bundle = export_bundle(loaded, Path(tmp) / f"bundle{len(rows)}", ExportOptions(precision), calib=calib)
                for eps in eps_list:
                    doc = run_verify(
                        bundle,
                        test,
                        ThreatModel("linf", eps),
                        VerifyOptions(n=args.n, suite=args.suite, sweep=None),
                        reference=original.reference(),
                    )
                    norms = (report or {}).get("spectral_norms", {})
                    row = {
                        "model": name,
                        "checkpoint": checkpoint,
                        "method": method,
                        "bits": bits,
                        "eps": eps,
                        "n": args.n,
                        "suite": args.suite,
                        "clean": doc["clean_accuracy"],
                        "clean_ci95": doc["clean_accuracy_ci95"],
                        "robust": doc["robust_accuracy"],
                        "robust_ci95": doc["robust_accuracy_ci95"],
                        "agreement_engine_twin_adv": doc["agreement_E_S_on_S_adversarial"],
                        "twin_engine_clean_agreement": doc["models"]["S"]["top1_agreement_with_E"],
                        "flags": [f["flag"] for f in doc["flags"]],
                        "train_seconds": seconds,
                        "max_spectral_norm": max((v["after"] for v in norms.values()), default=None),
                        "final_loss": (report or {}).get("losses", [None])[-1]
                        if (report or {}).get("losses")
                        else None,
                    }
                    rows.append(row)
                    print(
                        f"{name} {bits} {method} eps {eps:.4g}: clean {100 * row['clean']:.1f}% robust "
                        f"{100 * row['robust']:.1f}% (twin/engine clean agreement "
                        f"{100 * row['twin_engine_clean_agreement']:.2f}%)",
                        flush=True,
                    )
    save_result("dq_baselines", rows, lr=args.lr)


if __name__ == "__main__":
    main()
