"""A tune's FP32 reference verified on every one of its final points, so that paired drops are exact, not bounds.

The tune pairs its pick against FP32 attacked only where the pick lost (an upper bound of the drop), and
`tune_baselines.py --final` does the same for the vendors' INT8. This runs FP32's standard suite on all the final
points through the tune's own cache (a later tune on that cache reads it: its final pairing is then exact), and
gives the exact paired drop of the tune's pick from the two cached runs. A baseline whose per-point results were
not kept is paired from its recorded counts: with FP32 attacked at the points it lost, `lost` (FP32 holds, it
loses) is exact already, and `gained` (it holds, FP32 loses) is FP32's losses everywhere less its losses there.

    python benchmarks/tune_exact_reference.py --target openvino --only pyautoattack-resnet18
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import CIFAR_CALIB, SHARED
from machine import save_result
from tune_baselines import frontier_result_name
from tune_models import models

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.tune import measure
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.workbench import Workbench
from deploy_robust.verify import ThreatModel
from deploy_robust.verify.document import per_example

HERE = Path(__file__).resolve().parent
CANDIDATE_POINTS = 200  # tune's --n: the final points follow the candidate points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="openvino", choices=["openvino", "ort-cpu"])
    parser.add_argument("--only", required=True)
    parser.add_argument("--tunes", default=str(HERE / ".tune"), help="tune_models.py's --out")
    parser.add_argument("--final-n", type=int, default=500)
    args = parser.parse_args()
    calib = load_dataset(CIFAR_CALIB, (3, 32, 32), split="train")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", (3, 32, 32))
    rows = []
    for checkpoint, eps, loaded in models("resnet18", args.only):
        tune = Path(args.tunes) / args.target / checkpoint / "robust"
        document = json.loads((tune / "frontier.json").read_text())
        settings = TuneOptions(ThreatModel("linf", eps), target=args.target, final_n=args.final_n)
        bench = Workbench(loaded, tune, calib, data, settings, print, tune.parent / "cache")
        with bench.held():
            fp32 = bench.bundle("fp32", "fp32", budgeted=False)
            reference = bench.verified(fp32, "standard", args.final_n, skip=CANDIDATE_POINTS)
            row = {"model": checkpoint, "target": args.target, "eps": eps, "n": args.final_n,
                   "fp32_robust_accuracy": reference["robust_accuracy"],
                   "fp32_clean_accuracy": reference["clean_accuracy"]}  # fmt: skip
            pick = next((r for r in document["measured"] if r.get("final", {}).get("holds")), None)
            if pick is not None:
                bundle = open_bundle(tune.parent / "cache" / "bundles" / pick["bundle"])
                figures = bench.verified(bundle, "standard", args.final_n, skip=CANDIDATE_POINTS)
                row["pick"] = {"name": pick["name"], "robust_accuracy": figures["robust_accuracy"],
                               "robust_drop": measure.paired_drop(reference, figures, "robust"),
                               "clean_drop": measure.paired_drop(reference, figures, "clean"),
                               "bound_before": pick["final"]["robust_drop"]}  # fmt: skip
        row["baselines"] = _baselines(checkpoint, args.target, reference)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    save_result(f"tune_exact_reference_{args.target.replace('-', '_')}", rows, script="tune_exact_reference")


def _baselines(checkpoint: str, target: str, reference: dict) -> dict:
    """The exact paired robust drops of `tune_baselines.py --frontier TARGET --final`'s baselines, from their
    recorded counts (see the module's doc)."""
    path = HERE / "results" / f"{frontier_result_name(checkpoint, target)}.json"
    if not path.is_file():
        return {}
    (result,) = json.loads(path.read_text())["results"]
    fp32_lost = ~per_example(reference, "robust")
    out = {}
    for label, v in result["baselines"].items():
        final = v.get("final")
        if not final or "robust_drop_at_most" not in final:
            continue
        bound, n = final["robust_drop_at_most"], final["n"]
        its_lost = n - round(final["robust_accuracy"] * n)  # FP32 was attacked at exactly these points
        lost = bound["lost"]  # FP32 holds, it loses: exact already
        gained = int(fp32_lost.sum()) - (its_lost - lost)  # it holds, FP32 loses
        out[label] = measure.paired_drop_from_counts(lost, gained, n) | {"bound_before": bound["drop"]}
    return out


if __name__ == "__main__":
    main()
