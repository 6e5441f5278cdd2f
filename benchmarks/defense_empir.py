"""EMPIR ensembles trained here, verified: attacking the vote naively vs the consistent loss.

Member sets as in the paper: MNIST (w2,a4)+(w2,a4)+FP32, CIFAR-10 (w4,a2)+(w2,a2)+FP32, each
member trained with the project's own (plain, not adversarial) training on the ../shared/data
training subsets. On the same first N test points, with the same suite:

- naive: attacks on the vote output itself (`--attack-output logits`): no gradient;
- verified: verify's default: attacks on the averaged member probabilities (the consistent
  loss, Tramer et al. 2020) and on each majority of members alone (any two of three fool the
  vote), every candidate scored on the vote;
- each member alone, exported and verified as its own bundle.

The ensemble bundle is exported with --precision int8 (low-precision members on integer
kernels, their trained grids kept) and compared with the float-kernel export on every test image.

The issue's goal: verified ensemble <= best single member + 2 pt.

    python benchmarks/defense_empir.py [--n 200] [--suite standard] [--datasets mnist,cifar]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import CIFAR_CALIB, MNIST_CALIB, SHARED
from machine import save_result

from deploy_robust.cli import main as cli
from deploy_robust.data import load_dataset
from deploy_robust.defenses import empir
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel, load_model
from deploy_robust.runtimes import create_runner
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

CASES = [
    ("mnist", MNIST_CALIB, "mnist_test.npz", ["w2a4", "w2a4", "fp32"], 0.1, 4),
    ("cifar", CIFAR_CALIB, "cifar10_test_first1017.npz", ["w4a2", "w2a2", "fp32"], 2 / 255, 15),
]


def summary(doc: dict) -> dict:
    return {
        "clean_accuracy": doc["clean_accuracy"],
        "robust_accuracy": doc["robust_accuracy"],
        "robust_accuracy_ci95": doc["robust_accuracy_ci95"],
        "gradient_attacks_only": doc["robust_accuracy_gradient_attacks_only"],
        "flags": [f["flag"] for f in doc["flags"]],
        "seconds": doc["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--datasets", default="mnist,cifar", help="comma-separated subset of mnist,cifar")
    args = parser.parse_args()
    chosen = args.datasets.split(",")
    rows = []
    for arch, train_file, test_file, members, eps, epochs in (c for c in CASES if c[0] in chosen):
        if not train_file.exists():
            sys.exit("needs ../shared/data")
        root = Path(tempfile.mkdtemp())
        member_args = [a for m in members for a in ("--member", m)]
        assert (
            cli(
                [
                    "ensemble",
                    "--arch",
                    arch,
                    *member_args,
                    "--data",
                    str(train_file),
                    "--epochs",
                    str(epochs),
                    "-o",
                    str(root / "ens.pt"),
                    "--json",
                ]
            )
            == 0
        )
        loaded = load_model(root / "ens.pt")
        test = load_dataset(SHARED / "datasets" / test_file, loaded.spec.shape)
        threat = ThreatModel("linf", eps)
        # the members on INT8 kernels (--precision int8), checked against the float-kernel export on the whole test set
        ensemble = export_bundle(loaded, root / "ensemble", ExportOptions("int8"))
        float_form = export_bundle(loaded, root / "ensemble_fp32")
        x = test.as_float()
        int8_votes, int8_log_probs, _ = create_runner("ort-cpu", ensemble).infer_outputs(x)
        float_votes, float_log_probs, _ = create_runner("ort-cpu", float_form).infer_outputs(x)
        run = dict(n=args.n, suite=args.suite, sweep=None, resume=False)
        row = {
            "dataset": arch,
            "members": members,
            "epochs": epochs,
            "eps": eps,
            "n": args.n,
            "suite": args.suite,
            "int8_vs_float_kernels": {
                "images": len(x),
                "vote_agreement": float((int8_votes.argmax(1) == float_votes.argmax(1)).mean()),
                "max_abs_log_prob_diff": float(abs(int8_log_probs - float_log_probs).max()),
                "quantized_convs_on_int8": sum(
                    layer["precision"] == "int8" for layer in ensemble.manifest.precision.layers
                ),
            },
            "naive_attack_on_vote": summary(
                run_verify(ensemble, test, threat, VerifyOptions(attack_output="logits", **run))
            ),
            "verified_consistent_loss": summary(
                run_verify(ensemble, test, threat, VerifyOptions(**run), defense_plan=empir.KIND.attack_plan)
            ),
            "majority_attacks": True,
        }  # verify also attacks every majority of members (since this field)
        row["member_alone"] = []
        for index, (name, net) in enumerate(zip(members, loaded.module.members)):
            single = LoadedModel(net, loaded.spec, {"file": f"member {index}", "format": "empir member"})
            bundle = export_bundle(single, root / f"member{index}")
            row["member_alone"].append(
                {"member": name} | summary(run_verify(bundle, test, threat, VerifyOptions(**run)))
            )
        best = max(m["robust_accuracy"] for m in row["member_alone"])
        row["verified_minus_best_member_pt"] = round(
            100 * (row["verified_consistent_loss"]["robust_accuracy"] - best), 1
        )
        row["goal_met"] = row["verified_minus_best_member_pt"] <= 2.0
        print(
            f"{arch}: naive {100 * row['naive_attack_on_vote']['robust_accuracy']:.1f}%, verified "
            f"{100 * row['verified_consistent_loss']['robust_accuracy']:.1f}%, members "
            + ", ".join(f"{m['member']} {100 * m['robust_accuracy']:.1f}%" for m in row["member_alone"]),
            flush=True,
        )
        rows.append(row)
    # a subset of the datasets is a separate result, so a partial rerun never mixes into the full one
    name = "defense_empir" if len(rows) == len(CASES) else "defense_empir_" + "_".join(chosen)
    print(save_result(name, rows, script="defense_empir"))


if __name__ == "__main__":
    main()
