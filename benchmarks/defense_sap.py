"""SAP on an adversarially trained CIFAR-10 model: what a naive evaluation reports, and what verify finds.

Model: cifar_cnn_a_adv (../shared/data), SAP-100 (draws = 100% of each layer's units, as
Athalye et al. 2018 evaluated it) after every ReLU, exported to one ONNX graph that draws a
fresh mask on every ONNX Runtime run. On the same first N CIFAR-10 test points:

- naive: PGD-CE (20 steps) on the twin with one random draw per step, each candidate scored
  once on the engine (the evaluation SAP's paper-era numbers came from);
- verify: `run_verify` with the chosen suite: EOT gradients, Square on E with averaged
  scores, every candidate scored in 20 passes, per-example worst case;
- base: the undefended FP32 bundle under the same suite.

The issue's goal: verified SAP <= base + 2 pt.

    python benchmarks/defense_sap.py [--n 200] [--eps 2/255] [--suite standard]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from common import SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.defenses.sap import apply_sap
from deploy_robust.export import export_bundle
from deploy_robust.runtimes import create_runner
from deploy_robust.stats import wilson_interval
from deploy_robust.verify import ThreatModel, attacks, parse_eps, run_verify
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.protocol import attack_twin


def naive_pgd(bundle, data, threat: ThreatModel, seed: int = 0) -> float:
    """PGD-CE, 20 steps, one draw per step (no EOT), each candidate scored once on E."""
    engine, twin = create_runner("ort-cpu", bundle), attack_twin(bundle)
    torch.manual_seed(seed)
    correct = 0
    for index, (x_np, y_np) in enumerate(data.batches(128)):
        clean_ok = engine.infer(x_np).argmax(1) == y_np
        adv = attacks.pgd(twin, torch.from_numpy(x_np), torch.from_numpy(y_np), threat, steps=20, seed=seed + index)
        correct += int((clean_ok & (engine.infer(adv.numpy()).argmax(1) == y_np)).sum())
    return correct / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", default="2/255")
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args()
    loaded = shared_model("cifar_cnn_a_adv.model")
    if loaded is None:
        sys.exit("needs ../shared/data")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", loaded.spec.shape).take(args.n)
    threat = ThreatModel("linf", parse_eps(args.eps))
    root = Path(tempfile.mkdtemp())
    base = export_bundle(loaded, root / "base")
    sap = export_bundle(apply_sap(loaded, None, args.fraction), root / "sap")
    row = {
        "model": "cifar_cnn_a_adv",
        "defense": f"SAP-{100 * args.fraction:g} after every ReLU",
        "n": len(data),
        "eps": args.eps,
        "suite": args.suite,
    }
    row["sap_naive_pgd20_one_draw"] = naive_pgd(sap, data, threat)
    print(f"naive PGD-20 on SAP: {100 * row['sap_naive_pgd20_one_draw']:.1f}%", flush=True)
    for name, bundle in (("base", base), ("sap", sap)):
        doc = run_verify(bundle, data, threat, VerifyOptions(n=len(data), suite=args.suite, sweep=None, resume=False))
        k = int(round(doc["robust_accuracy"] * len(data)))
        row[f"{name}_verify"] = {
            "clean_accuracy": doc["clean_accuracy"],
            "robust_accuracy": doc["robust_accuracy"],
            "robust_accuracy_ci95": list(wilson_interval(k, len(data))),
            "expected_robust_accuracy": doc.get("expected_robust_accuracy"),
            "stable_prediction_fraction": doc["stochastic_engine"]["stable_prediction_fraction"],
            "flags": [f["flag"] for f in doc["flags"]],
            "seconds": doc["seconds"],
            "per_attack": {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]},
        }
        print(
            f"{name}: clean {100 * doc['clean_accuracy']:.1f}%, verified robust {100 * doc['robust_accuracy']:.1f}% "
            f"({doc['seconds']:.0f} s; flags {row[f'{name}_verify']['flags']})",
            flush=True,
        )
    row["sap_minus_base_pt"] = round(
        100 * (row["sap_verify"]["robust_accuracy"] - row["base_verify"]["robust_accuracy"]), 1
    )
    row["goal_met"] = row["sap_minus_base_pt"] <= 2.0
    print(save_result("defense_sap", [row]))


if __name__ == "__main__":
    main()
