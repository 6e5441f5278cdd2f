"""`deploy-robust tune` on the real checkpoints: the pick against every uniform configuration, robust-driven
against clean-driven tuning on the same budget, and what a rerun costs.

For each model: a robust-driven tune (`--objective-metric robust`), the same tune again (every measurement
from the cache), and a clean-driven tune with the same budget in a folder of its own, sharing the first's
cache (`tune --cache`): it measures only its clean margins and its own candidates. Target ort-cpu,
batch 1, latency objective, budgets 1 pt robust and 1 pt clean (paired against FP32), the quick suite on
200 test points for candidates and the standard suite on 500 for the picks.

    python benchmarks/tune_models.py [--only resnet2b.pth] [--out benchmarks/.tune] [--batch 32 --objective throughput]
                                     [--space precision,gdws] [--models resnet18 --target openvino --time-budget 2700]
                                     [--metrics robust]

A second configuration in the same --out reuses every bundle, sensitivity and verification: only the
latencies are measured again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Iterator


from autoattack_referee import _load
from common import CIFAR_CALIB, SHARED, checkpoint_slug
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.ingest import LoadedModel
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.run import run_tune
from deploy_robust.verify import ThreatModel

MODELS = [("resnet2b.pth", 2 / 255), ("cifar_cnn_a_adv.model", 2 / 255)]
# the real-size models (`--models resnet18`): pyautoattack's trained ResNet-18 through `--arch`, and ours
RESNET18 = [("pyautoattack-resnet18", 1 / 255), ("resnet18_cifar_fgsm.pt", 1 / 255)]


def models(which: str, only: str | None = None) -> Iterator[tuple[str, float, LoadedModel]]:
    """(checkpoint, eps, model) of `which` ("small" or "resnet18"), or of `only` among them; a model not found
    here is skipped with a line saying so."""
    for checkpoint, eps in MODELS if which == "small" else RESNET18:
        if only and checkpoint != only:
            continue
        loaded = _load(checkpoint)
        if loaded is None:
            print(f"{checkpoint}: not found, skipped", flush=True)
            continue
        yield checkpoint, eps, loaded


def _summary(doc: dict, seconds: float) -> dict:
    pick = next((r for r in doc["measured"] if r["name"] == doc["pick"]), None)
    uniform = {
        r["name"].replace("uniform ", ""): {
            k: r[k] for k in ("latency_ms", "robust_accuracy", "clean_accuracy", "holds")
        }
        | {"robust_drop": r["robust_drop"]["drop"]}
        for r in doc["measured"]
        if r["uniform"]
    }
    holding = [r["latency_ms"] for r in doc["measured"] if r["uniform"] and r["holds"]]
    return {
        "pick": doc["pick"],
        "seconds": round(seconds, 1),
        "cache": doc["cache"],
        "pick_latency_ms": pick and pick["latency_ms"],
        "pick_final": pick and pick.get("final"),
        "fastest_holding_uniform_ms": min(holding) if holding else None,
        "uniform": uniform,
        "candidates_verified": sum(not r["uniform"] for r in doc["measured"]),
        "frontier_points": len(doc["predicted_frontier"]),
        "final_reference": doc["final_reference"],
        "stopped_in": doc["time_budget"]["stopped_in"],
        "uniform_not_checked": doc.get("uniform_not_checked", []),
        "timings": doc["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / ".tune"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--objective", default="latency", choices=["latency", "throughput"])
    parser.add_argument("--space", help="as tune's --space, e.g. precision,gdws (default: every precision)")
    parser.add_argument("--models", default="small", choices=["small", "resnet18"])
    parser.add_argument("--target", default="ort-cpu", choices=["ort-cpu", "openvino"])
    parser.add_argument("--time-budget", type=float, help="seconds for each tune (tune's --time-budget)")
    parser.add_argument("--final-n", type=int, default=500)
    parser.add_argument("--metrics", default="robust,clean", help="the tunes to run per model, in order")
    args = parser.parse_args()
    space = tuple(args.space.split(",")) if args.space else None
    calib = load_dataset(CIFAR_CALIB, (3, 32, 32), split="train")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", (3, 32, 32))
    name = (
        "tune_models"
        if (args.batch, args.objective) == (1, "latency")
        else f"tune_models_b{args.batch}_{args.objective}"
    ) + ("_" + args.space.replace(",", "_") if args.space else "")
    # one model's run (`--only`) is named by that model, so that tuning another one writes a result of its own
    models_part = checkpoint_slug(args.only) if args.only else args.models
    name += (
        "" if (models_part, args.target) == ("small", "ort-cpu") else f"_{models_part}_{args.target.replace('-', '_')}"
    )
    name += "" if args.time_budget is None else f"_budget{args.time_budget:g}s"
    if "robust" not in args.metrics.split(","):  # a clean-driven run alone keeps the robust run's result beside it
        name += "_" + args.metrics.replace(",", "_")
    rows = []
    for checkpoint, eps, loaded in models(args.models, args.only):
        row = {
            "model": checkpoint,
            "eps": eps,
            "batch": args.batch,
            "objective": args.objective,
            "space": args.space or "precision",
            "target": args.target,
            "time_budget_s": args.time_budget,
        }
        rows.append(row)
        for metric in args.metrics.split(","):
            settings = TuneOptions(
                ThreatModel("linf", eps),
                metric=metric,
                max_robust_drop=0.01,
                max_clean_drop=0.01,
                batch=args.batch,
                objective=args.objective,
                space=space,
                target=args.target,
                time_budget_s=args.time_budget,
                final_n=args.final_n,
            )
            out = Path(args.out) / args.target / checkpoint / metric
            cache = out.parent / "cache"  # the clean-driven tune reuses the robust one's bundles and measurements
            start = time.perf_counter()
            doc = run_tune(loaded, out, calib, data, settings, cache=cache)
            row[metric] = _summary(doc, time.perf_counter() - start)
            save_result(name, rows, script="tune_models")  # the tune itself, before its rerun
            if metric == "robust" and doc["time_budget"]["stopped_in"]:  # a rerun would continue it, not read it
                row["rerun_skipped"] = "the time budget cut the tune; a rerun continues its work from the cache"
            elif metric == "robust":
                start = time.perf_counter()
                again = run_tune(loaded, out, calib, data, settings, cache=cache)
                row["rerun_seconds"] = round(time.perf_counter() - start, 1)
                row["rerun_cache"] = again["cache"]
            print(f"{checkpoint} {metric}: pick {doc['pick']} ({row[metric]['seconds']:.0f} s)", flush=True)
            save_result(name, rows, script="tune_models")  # after each tune: a run stopped later keeps this one


if __name__ == "__main__":
    main()
