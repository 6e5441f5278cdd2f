"""tune's per-layer sensitivities in memory against the exported single-layer bundles they replace: cost and ranking.

For each model, every weighted layer at INT8 and INT4 (target ort-cpu): the points' mean margin loss under PGD-10
(`measure.margin_drop`, what tune ranks layers by) on 64 calibration images at the model's eps, measured (a) in memory (`tune.sensitivity`: the layer lowered inside
the torch model with the uniform bundle's weights and input scale, or rounded to nearest where the uniform bundle
keeps it float) and (b) on the twin of an exported single-layer bundle (GPTQ weights, what tune measured before), the second on `--exported K` layers spread over the depth (all of them with
`--exported 0`). Reports seconds per layer of each, and the Spearman rank correlation of the two on the layers
measured both ways. Beside them, per layer in memory: the drop of the mean margin (what tune ranked by before: a
loss on some points hidden by gains on others) and the points' mean clean-margin loss.

    python benchmarks/tune_sensitivity.py [--models resnet2b,pyautoattack-resnet18] [--exported 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from autoattack_referee import pyautoattack_resnet18, _load
from common import calibration_for, shared_model
from machine import save_result

from deploy_robust.tune import measure
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.sensitivity import InMemoryLowering
from deploy_robust.tune.space import plan_key, search_layers
from deploy_robust.tune.workbench import Workbench
from deploy_robust.verify import ThreatModel

import onnx

MODELS = {
    "resnet2b": (lambda: shared_model("resnet2b.pth"), 2 / 255),
    "cifar_cnn_a_adv": (lambda: shared_model("cifar_cnn_a_adv.model"), 2 / 255),
    "pyautoattack-resnet18": (pyautoattack_resnet18, 1 / 255),
    "resnet18_cifar_fgsm": (lambda: _load("resnet18_cifar_fgsm.pt"), 1 / 255),
}


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def measure_model(name: str, exported_layers: int, out: Path) -> dict | None:
    build, eps = MODELS[name]
    loaded = build()
    if loaded is None:
        print(f"{name}: not available, skipped")
        return None
    calib = calibration_for(loaded, 256)
    sample = calib.take(64)
    threat = ThreatModel("linf", eps)
    settings = TuneOptions(threat, target="ort-cpu")
    bench = Workbench(loaded, out / name, calib, calib, settings, print)  # test data unused here
    fp32 = bench.bundle("fp32", "fp32", budgeted=False)
    layers = search_layers(onnx.load(str(fp32.model_path)), "ort-cpu")
    started = time.perf_counter()
    uniform = {p: bench.bundle(p, p) for p in ("int8", "int4")}  # tune exports these anyway
    uniform_s = time.perf_counter() - started
    grids = {p: (b.manifest.model.sha256[:12], onnx.load(str(b.model_path))) for p, b in uniform.items()}
    lowering = InMemoryLowering(loaded, onnx.load(str(fp32.model_path)), "ort-cpu", calib, uniform=grids)
    rows = []
    start = time.perf_counter()
    base = lowering.margins(None, "fp32", sample, threat, "robust")
    clean_base = lowering.margins(None, "fp32", sample, threat, "clean")
    base_s = time.perf_counter() - start
    lowering.ranges()
    ranges_s = time.perf_counter() - start - base_s
    pick = set(range(len(layers)))
    if exported_layers and exported_layers < len(layers):
        pick = set(np.linspace(0, len(layers) - 1, exported_layers).round().astype(int).tolist())
    twin_base = measure.twin_margins(fp32, sample, threat, "robust")
    for i, layer in enumerate(layers):
        for p in ("int8", "int4"):
            if not lowering.lowerable(layer.name):
                continue
            t0 = time.perf_counter()
            margins = lowering.margins(layer.name, p, sample, threat, "robust")
            in_memory = measure.margin_drop(base, margins)
            t1 = time.perf_counter()
            clean = lowering.margins(layer.name, p, sample, threat, "clean")
            row = {
                "layer": layer.name,
                "macs": layer.macs,
                "precision": p,
                "in_memory_drop": in_memory,
                "in_memory_mean_drop": float(np.mean(base) - np.mean(margins)),
                "in_memory_clean_drop": measure.margin_drop(clean_base, clean),
                "in_memory_s": t1 - t0,
                "grid": lowering.grid(layer.name, p),
            }
            if i in pick:
                plan = tuple(p if j == i else "fp32" for j in range(len(layers)))
                bundle = bench.bundle(plan_key(plan), p, plan, layers)
                t2 = time.perf_counter()
                row["exported_drop"] = measure.margin_drop(
                    twin_base, measure.twin_margins(bundle, sample, threat, "robust")
                )
                row["exported_s"] = time.perf_counter() - t1
                row["exported_margin_only_s"] = time.perf_counter() - t2
            rows.append(row)
            print(
                f"{name} {layer.name} {p}: in memory {in_memory:+.4f} ({row['in_memory_s']:.1f} s)"
                + (
                    f", exported {row['exported_drop']:+.4f} ({row['exported_s']:.1f} s)"
                    if "exported_drop" in row
                    else ""
                ),
                flush=True,
            )
    both = [r for r in rows if "exported_drop" in r]
    summary = {
        "model": name,
        "eps": eps,
        "layers": len(layers),
        "fp32_margin_in_memory": float(np.mean(base)),
        "fp32_margin_twin": float(np.mean(twin_base)),
        "fp32_pgd_s": base_s,
        "calibration_s": ranges_s,
        "uniform_exports_s": uniform_s,
        "in_memory_s_per_candidate": float(np.mean([r["in_memory_s"] for r in rows])),
        "exported_s_per_candidate": float(np.mean([r["exported_s"] for r in both])) if both else None,
        "spearman": {
            p: spearman(
                [r["in_memory_drop"] for r in both if r["precision"] == p],
                [r["exported_drop"] for r in both if r["precision"] == p],
            )
            for p in ("int8", "int4")
        },
        "spearman_all": spearman([r["in_memory_drop"] for r in both], [r["exported_drop"] for r in both]),
        "rows": rows,
    }
    print({k: v for k, v in summary.items() if k != "rows"}, flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet2b,pyautoattack-resnet18")
    parser.add_argument("--exported", type=int, default=6, help="layers measured from exported bundles (0: all)")
    parser.add_argument("--out", default="tune_sensitivity")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            summary = measure_model(name, args.exported, Path(tmp))
            if summary is not None:
                results.append(summary)
    save_result(
        args.out,
        results,
        command=f"python benchmarks/tune_sensitivity.py --models {args.models} --exported {args.exported}",
    )


if __name__ == "__main__":
    main()
