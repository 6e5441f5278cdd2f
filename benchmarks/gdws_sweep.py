"""GDWS on real robust models: MACs against clean and robust accuracy, swept over beta (through MAC budgets).

For each budget (fraction of the rewritable convolutions' MACs kept) GDWS finds the common
allocation, rewrites the model, exports an FP32 bundle and runs `deploy-robust verify` on it
(per-example worst case over FGSM, PGD-CE/margin on the twin, Square on the engine and
transfer from the original model; L-inf at the eps the model was trained for), and checks
the bundle against the rewritten torch model on the whole test set (max |logit difference|).
Three allocations: the default (every layer keeps the budget's fraction of its MACs, plain
Frobenius error), and the paper's one common beta with plain Frobenius error and with its
noise gains at PGD points (alpha).

Models: resnet2b from ../shared/data (adversarially trained, 2/255) and, when it has been
trained (benchmarks/train_resnet18_cifar.py), the FGSM-trained ResNet-18.

    python benchmarks/gdws_sweep.py [--n 500] [--suite quick] [--models resnet2b,resnet18]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import CIFAR_CALIB, SHARED, shared_model
from machine import save_result
from train_resnet18_cifar import CHECKPOINT

from deploy_robust.bench.plots import _axes, _save
from deploy_robust.data import load_dataset
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner
from deploy_robust.transforms.gdws.alphas import AlphaSettings
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

HERE = Path(__file__).resolve().parent

TEST = SHARED / "datasets" / "cifar10_test_first1017.npz"
SETUPS = {  # name -> (loader, eps, budgets, points)
    "resnet2b": (lambda: shared_model("resnet2b.pth"), 2 / 255, (0.8, 0.6, 0.5, 0.4, 0.3), None),
    "resnet18": (
        lambda: load_model(CHECKPOINT, "resnet18") if CHECKPOINT.exists() else None,
        2 / 255,
        (0.75, 0.5),
        100,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--models", default="resnet2b,resnet18")
    args = parser.parse_args()
    test = load_dataset(TEST, (3, 32, 32))
    train = load_dataset(CIFAR_CALIB, (3, 32, 32), split="train")
    rows = []
    for name in args.models.split(","):
        load, eps, budgets, points = SETUPS[name]
        original = load()
        if original is None:
            print(f"skipping {name}: model not available")
            continue
        n = min(args.n, points or args.n)
        settings = AlphaSettings(eps=eps, steps=10, n=256)
        variants = [("original", None, original)]
        with tempfile.TemporaryDirectory() as tmp:
            alphas = Path(tmp) / "alphas.json"
            for budget in budgets:
                for weighting in ("per-layer", "frobenius", "alpha"):
                    alpha = weighting == "alpha"
                    request = GDWSRequest(
                        budget=budget,
                        alphas=alphas if alpha else None,
                        alpha_data=train if alpha else None,
                        alpha_settings=settings,
                        allocation="per-layer" if weighting == "per-layer" else "global",
                    )
                    rewritten, plan = rewrite_model(original, request)
                    variants.append((weighting, plan, rewritten))
            for weighting, plan, loaded in variants:
                bundle = export_bundle(loaded, Path(tmp) / f"b{len(rows)}", ExportOptions("fp32"))
                fidelity = compare_logits(
                    evaluate(create_runner("ort-cpu", bundle), test).logits,
                    evaluate(create_runner("torch", module=loaded.reference()), test).logits,
                )
                doc = run_verify(
                    bundle,
                    test,
                    ThreatModel("linf", eps),
                    VerifyOptions(n=n, suite=args.suite, sweep=None),
                    reference=original.reference(),
                )
                macs = plan.to_json()["model_macs"] if plan else None
                row = {
                    "model": name,
                    "weighting": weighting,
                    "budget": plan.budget if plan else 1.0,
                    "beta": plan.beta if plan else 0.0,
                    "eps": eps,
                    "n": n,
                    "suite": args.suite,
                    "model_macs": macs["gdws"] if macs else None,
                    "mac_ratio": macs["ratio"] if macs else 1.0,
                    "clean": doc["clean_accuracy"],
                    "robust": doc["robust_accuracy"],
                    "robust_ci95": doc["robust_accuracy_ci95"],
                    "flags": [f["flag"] for f in doc["flags"]],
                    "seconds": doc["seconds"],
                    "bundle_vs_torch_max_abs_logit_diff": fidelity.max_abs_diff,
                    "bundle_vs_torch_top1_agreement": fidelity.top1_agreement,
                }
                rows.append(row)
                print(
                    f"{name} {weighting} budget {row['budget']:.2f} ({row['mac_ratio']:.2f}x MACs): clean "
                    f"{100 * row['clean']:.1f}% robust {100 * row['robust']:.1f}% ({row['seconds']:.0f} s; bundle vs torch "
                    f"max |dlogit| {fidelity.max_abs_diff:.1e})",
                    flush=True,
                )
        plot(name, [r for r in rows if r["model"] == name], eps)
    previous = HERE / "results" / "gdws_sweep.json"  # keep the rows of models not run this time
    if previous.exists():
        ran = {r["model"] for r in rows}
        rows = [r for r in json.loads(previous.read_text())["results"] if r["model"] not in ran] + rows
    save_result("gdws_sweep", rows)


def plot(name: str, rows: list[dict], eps: float) -> None:
    plt, fig, ax = _axes()
    original = next(r for r in rows if r["weighting"] == "original")
    labels = {
        "per-layer": "per-layer budget (default)",
        "frobenius": "one beta, Frobenius",
        "alpha": "one beta, noise gains",
    }
    for weighting, style in (("per-layer", "-"), ("frobenius", ":"), ("alpha", "--")):
        pts = sorted([original] + [r for r in rows if r["weighting"] == weighting], key=lambda r: r["mac_ratio"])
        for key, marker in (("clean", "o"), ("robust", "s")):
            ax.plot(
                [r["mac_ratio"] for r in pts],
                [100 * r[key] for r in pts],
                style,
                marker=marker,
                label=f"{key}, {labels[weighting]}",
            )
    ax.set_xlabel("MAC reduction of the whole model (x)")
    ax.set_ylabel(f"accuracy (%), robust at L-inf {255 * eps:.0f}/255")
    ax.set_title(f"GDWS on {name}: verify, {rows[0]['n']} test images", fontsize=9)
    ax.legend(fontsize=7)
    _save(plt, fig, ax, HERE / "results" / f"gdws_sweep_{name}.png")


if __name__ == "__main__":
    main()
