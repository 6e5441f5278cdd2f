"""The tune's picks against what a user would pick instead, on the runtime that ships each and on the same points:
NNCF's INT8 and NNCF's accuracy control on OpenVINO, ONNX Runtime's best hand-tuned INT8 on ONNX Runtime, and
our own uniform INT8 on each (`vendor_int8.py` makes the vendors' graphs into bundles).

Per runtime, every bundle is benchmarked interleaved in one run (batch 32 throughput, batch 1 latency), then
verified with the standard suite on the tune's final points (test points 200..200+N-1, disjoint from the 200 its
candidates and NNCF's accuracy control were checked on), paired against the FP32 bundle on the same runtime and
points. The picks of `benchmarks/tune_models.py` join where its output folder has them (robust- and clean-driven,
per target).

    python benchmarks/tune_baselines.py [--models small|resnet18] [--only MODEL] [--tunes benchmarks/.tune]
                                        [--final-n 500] [--rounds 3] [--seconds 1.0]

`--frontier TARGET` draws the baselines into the tune's own frontier instead (frontier.json of its robust-driven
tune on TARGET): every configuration and plan the tune measured and the baselines benchmarked again in one
interleaved run (batch 32), the baselines verified as the tune verified its candidates (quick suite, its 200
candidate points, paired against FP32), all on one plot: benchmarks/results/tune_frontier_MODEL_TARGET.png.
With `--final`, each baseline also gets the tune's final check (standard suite, the final points, paired against
FP32 attacked where it lost).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import SHARED, calibration_for, checkpoint_slug
from machine import save_result
from tune_models import models
from vendor_int8 import nncf_accuracy_control, nncf_int8, ort_int8

from deploy_robust import pipeline
from deploy_robust.bundle import Bundle, is_bundle, open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.targets import get_target
from deploy_robust.tune import measure
from deploy_robust.verify import ThreatModel
from deploy_robust.verify.options import VerifyOptions

HERE = Path(__file__).resolve().parent
CANDIDATE_POINTS = 200  # tune's --n: the points its candidates (and here NNCF's accuracy control) are checked on
CLEAN_BUDGET = 0.01  # tune_models.py's budgets: 1 pt clean, 1 pt robust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small", choices=["small", "resnet18"])
    parser.add_argument("--only")
    parser.add_argument("--tunes", default=str(HERE / ".tune"), help="tune_models.py's --out")
    parser.add_argument("--final-n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="benchmark only (no verification, no plot): the "
        "speed ratios in minutes, where the 500-point checks of a ResNet-18 take hours",
    )
    parser.add_argument("--frontier", choices=["openvino", "ort-cpu"], help="the baselines in the tune's frontier")
    parser.add_argument(
        "--final",
        action="store_true",
        help="with --frontier: also the baselines' check as the tune checks its pick (standard suite on the "
        "--final-n final points, paired against FP32 attacked where the baseline lost: an upper bound of the drop)",
    )
    args = parser.parse_args()
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", (3, 32, 32))
    if args.frontier:
        for checkpoint, eps, loaded in models(args.models, args.only):
            _frontier(loaded, checkpoint, eps, data, args)
        return
    rows = []
    for checkpoint, eps, loaded in models(args.models, args.only):
        calib = calibration_for(loaded)
        with tempfile.TemporaryDirectory() as tmp:
            groups = _bundles(loaded, checkpoint, calib, data, Path(tmp), Path(args.tunes))
            for target, bundles in groups.items():
                row = {"model": checkpoint, "eps": eps, "target": target, "final_n": args.final_n}
                row |= _measured(bundles, target, data, ThreatModel("linf", eps), args)
                rows.append(row)
                print(_line(row), flush=True)
        name = f"tune_baselines_{args.models}" + ("_speed" if args.speed_only else "")
        out = save_result(name, rows, script="tune_baselines")
        if not args.speed_only:
            _plot(rows, out.with_suffix(".png"))


def _bundles(loaded, checkpoint: str, calib, data, root: Path, tunes: Path) -> dict[str, dict[str, Bundle]]:
    """Per target: name -> bundle (FP32 first: the reference every drop is paired against)."""
    fp32 = export_bundle(loaded, root / "fp32", ExportOptions("fp32"))
    ours = {
        target: export_bundle(
            loaded,
            root / f"int8-{target}",
            ExportOptions("int8", get_target(target).profile, calibration=CalibrationOptions(n=256)),
            calib=calib,
        )
        for target in ("openvino", "ort-cpu")
    }
    groups = {
        target: {"fp32": fp32, "ours uniform int8": ours[target]} | _vendor_int8(target, fp32, calib, data, root)
        for target in ("openvino", "ort-cpu")
    }
    for target, bundles in groups.items():
        for metric in ("robust", "clean"):
            best = tunes / target / checkpoint / metric / "best"
            if is_bundle(best):
                bundles[f"tune pick ({metric}-driven)"] = open_bundle(best)
    return groups


def _vendor_int8(target: str, fp32: Bundle, calib, data, root: Path) -> dict[str, Bundle]:
    """What a user of `target` would pick instead, by name: NNCF's INT8 and its accuracy control (clean top-1 on the
    candidate points, the tune's clean budget) on OpenVINO; ONNX Runtime's best hand-tuned INT8 on ort-cpu."""
    if target != "openvino":
        return {"ORT int8, hand-tuned": ort_int8(fp32, calib, root / "ort")}
    started = time.perf_counter()
    control = nncf_accuracy_control(fp32, calib, data.take(CANDIDATE_POINTS), CLEAN_BUDGET, root / "nncf-ac")
    print(f"NNCF accuracy control took {time.perf_counter() - started:.0f} s", flush=True)
    return {"NNCF int8": nncf_int8(fp32, calib, root / "nncf"), "NNCF accuracy control (clean, 1 pt)": control}


def _verified(bundles: dict[str, Bundle], points, threat: ThreatModel, options: VerifyOptions) -> dict[str, dict]:
    """Per bundle, verify's figures on `points` and its paired drops against the first bundle (the FP32
    reference) on the same points."""
    out, reference = {}, None
    for name, bundle in bundles.items():
        started = time.perf_counter()
        doc = pipeline.verify_engine(bundle, points, threat, options)
        reference = reference or doc
        out[name] = {
            "robust_accuracy": doc["robust_accuracy"],
            "robust_accuracy_ci95": doc["robust_accuracy_ci95"],
            "clean_accuracy": doc["clean_accuracy"],
            "robust_drop": measure.paired_drop(reference, doc, "robust"),
            "clean_drop": measure.paired_drop(reference, doc, "clean"),
            "flags": [f["flag"] for f in doc["flags"]],
            "verify_seconds": round(time.perf_counter() - started, 1),
        }
    return out


def _measured(bundles: dict[str, Bundle], target: str, data, threat: ThreatModel, args) -> dict:
    backend = get_target(target).backend
    listed = list(bundles.values())
    speed = {
        "throughput_b32_ms_per_image": measure.latencies(listed, backend, 32, "throughput", duration=args.seconds,
                                                         rounds=args.rounds),
        "latency_b1_ms": measure.latencies(listed, backend, 1, "latency", duration=args.seconds, rounds=args.rounds),
    }  # fmt: skip
    vendor = "NNCF int8" if target == "openvino" else "ORT int8, hand-tuned"
    variants = {
        name: {
            "exporter": bundle.manifest.document["model"].get("exporter"),
            "precision": bundle.manifest.precision.mode,
            **{key: ms[i] for key, ms in speed.items()},
        }
        for i, (name, bundle) in enumerate(bundles.items())
    }
    for v in variants.values():
        v["throughput_vs_vendor"] = variants[vendor]["throughput_b32_ms_per_image"] / v["throughput_b32_ms_per_image"]
        v["latency_vs_vendor"] = variants[vendor]["latency_b1_ms"] / v["latency_b1_ms"]
    if args.speed_only:
        return {"vendor": vendor, "variants": variants}
    points = data.skip(CANDIDATE_POINTS)
    options = VerifyOptions(n=args.final_n, suite="standard", backend=backend, sweep=None, seed=0, resume=False,
                            layout="contiguous")  # fmt: skip
    for name, figures in _verified(bundles, points, threat, options).items():
        variants[name] |= figures
    return {"vendor": vendor, "variants": variants}


def _plot(rows: list[dict], out: Path) -> None:
    """Per model and runtime, one panel: time per image at batch 32 against robust accuracy verified on the same
    final points (95% interval), for FP32, our uniform INT8, the vendors' INT8 and the tune picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        for i, (name, v) in enumerate(row["variants"].items()):
            kind = "tune" if name.startswith("tune") else "ours" if name.startswith(("ours", "fp32")) else "vendor"
            marker, color = {"tune": ("*", "C3"), "ours": ("s", "C0"), "vendor": ("^", "C2")}[kind]
            x, y = v["throughput_b32_ms_per_image"], 100 * v["robust_accuracy"]
            lo, hi = (100 * b for b in v["robust_accuracy_ci95"])
            ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt=marker, color=color, capsize=3, markersize=8)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4 + 9 * i), fontsize=6)  # staggered
        ax.set_title(f"{row['model']} on {row['target']} (eps {row['eps'] * 255:.0f}/255)", fontsize=8)
        ax.set_xlabel("ms per image, batch 32 (left is faster)")
        ax.set_ylabel(f"robust accuracy, standard suite, {row['final_n']} points (%)")
        ax.grid(True, alpha=0.3)
    fig.suptitle("tune picks (stars), our uniform bundles (squares), the vendors' INT8 (triangles)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _frontier(loaded, checkpoint: str, eps: float, data, args) -> None:
    """The tune's measured configurations and the baselines on the tune's own axes (see the module's doc)."""
    tune = Path(args.tunes) / args.frontier / checkpoint / "robust"
    document = json.loads((tune / "frontier.json").read_text())
    rows = [r for r in document["measured"] if r["latency_ms"] is not None]
    backend = get_target(args.frontier).backend
    calib = calibration_for(loaded)
    threat = ThreatModel("linf", eps)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fp32 = export_bundle(loaded, root / "fp32", ExportOptions("fp32"))
        baselines = _vendor_int8(args.frontier, fp32, calib, data, root)
        tuned = [open_bundle(tune.parent / "cache" / "bundles" / r["bundle"]) for r in rows]
        ms = measure.latencies(tuned + list(baselines.values()), backend, 32, "throughput", duration=args.seconds,
                               rounds=args.rounds)  # fmt: skip
        for r, latency in zip(rows, ms):
            r["latency_ms_this_run"] = latency
        options = VerifyOptions(n=CANDIDATE_POINTS, suite="quick", backend=backend, sweep=None, seed=0, resume=False,
                                layout="contiguous")  # fmt: skip
        figures = _verified({"fp32": fp32, **baselines}, data, threat, options)
        if args.final:
            for name, final in _final_checks(baselines, fp32, data, threat, replace(options, n=args.final_n)).items():
                figures[name]["final"] = final
    points = {name: figures[name] | {"latency_ms_this_run": latency}
              for name, latency in zip(baselines, ms[len(rows):])}  # fmt: skip
    result = {"model": checkpoint, "eps": eps, "target": args.frontier, "pick": document["pick"],
              "measured": rows, "baselines": points}  # fmt: skip
    out = save_result(frontier_result_name(checkpoint, args.frontier), [result], script="tune_baselines")
    _frontier_plot(result, out.with_suffix(".png"))
    for name, v in points.items():
        print(
            f"{name}: {v['latency_ms_this_run']:.3f} ms/img, robust {100 * v['robust_accuracy']:.1f}% "
            f"(drop {100 * v['robust_drop']['drop']:+.1f} pt), clean {100 * v['clean_accuracy']:.1f}%",
            flush=True,
        )


def frontier_result_name(checkpoint: str, target: str) -> str:
    """The results name of `--frontier TARGET` for `checkpoint` (benchmarks/results/NAME.json and .png)."""
    return f"tune_frontier_{checkpoint_slug(checkpoint)}_{target.replace('-', '_')}"


def _final_checks(baselines: dict[str, Bundle], fp32: Bundle, data, threat: ThreatModel, options: VerifyOptions):
    """Per baseline, the tune's final check: the standard suite on the points after the candidate points, paired
    against FP32 attacked where the baseline lost (`measure.reference_outcomes`: an upper bound of the drop)."""
    points, standard = data.skip(CANDIDATE_POINTS), replace(options, suite="standard", resume=True)
    out, by_graph = {}, {}
    for name, bundle in baselines.items():
        if bundle.manifest.model.sha256 in by_graph:  # NNCF's accuracy control reverting nothing: NNCF's INT8 itself
            out[name] = out[by_graph[bundle.manifest.model.sha256]] | {
                "same_graph_as": by_graph[bundle.manifest.model.sha256]
            }
            continue
        by_graph[bundle.manifest.model.sha256] = name
        started = time.perf_counter()
        doc = pipeline.verify_engine(bundle, points, threat, standard)
        reference = measure.reference_outcomes(
            doc,
            lambda at: pipeline.verify_engine(fp32, points.subset(at), threat, replace(standard, n=len(at))),
            everywhere=False,
        )
        out[name] = {
            "n": standard.n,
            "robust_accuracy": doc["robust_accuracy"],
            "robust_accuracy_ci95": doc["robust_accuracy_ci95"],
            "clean_accuracy": doc["clean_accuracy"],
            "robust_drop_at_most": measure.paired_drop(reference, doc, "robust"),
            "clean_drop_at_most": measure.paired_drop(reference, doc, "clean"),
            "reference_attacked": reference["attacked"],
            "flags": [f["flag"] for f in doc["flags"]],
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{name}: final check {out[name]}", flush=True)
    return out


def _frontier_plot(result: dict, out: Path) -> None:
    """Time per image at batch 32 (one interleaved run) against robust accuracy on the quick suite (95% interval):
    the tune's uniform configurations (squares) and searched plans (dots), its pick (star), the baselines
    (triangles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    entries = [(r["name"], r, "pick" if r["name"] == result["pick"] else "uniform" if r["uniform"] else "plan")
               for r in result["measured"]]  # fmt: skip
    entries += [(name, v, "baseline") for name, v in result["baselines"].items()]
    styles = {"uniform": ("s", "C0", "uniform"), "plan": ("o", "C1", "searched plans"), "pick": ("*", "C3", "pick"),
              "baseline": ("^", "C2", "vendor baselines")}  # fmt: skip
    shown = set()
    for i, (name, v, kind) in enumerate(entries):
        marker, color, label = styles[kind]
        x, y = v["latency_ms_this_run"], 100 * v["robust_accuracy"]
        lo, hi = (100 * b for b in (v.get("robust_ci95") or v["robust_accuracy_ci95"]))
        ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt=marker, color=color, capsize=2,
                    markersize=11 if kind == "pick" else 6, label=None if kind in shown else label)  # fmt: skip
        shown.add(kind)
        if kind != "plan":
            ax.annotate(name.replace("uniform ", ""), (x, y), textcoords="offset points", xytext=(4, 3 + 7 * (i % 3)),
                        fontsize=6)  # fmt: skip
    times = [v["latency_ms_this_run"] for _, v, _ in entries]
    if max(times) > 4 * min(times):  # a log axis only where the times span it; its ticks would skip 1.1-1.9
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("ms per image, batch 32, one interleaved run (left is faster)")
    ax.set_ylabel("robust accuracy, quick suite, 200 candidate points (%)")
    ax.set_title(f"tune on {result['target']}: {result['model']} (eps {result['eps'] * 255:.0f}/255)", fontsize=9)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _line(row: dict) -> str:
    parts = [
        f"{name}: {v['throughput_vs_vendor']:.2f}x b32, {v['latency_vs_vendor']:.2f}x b1"
        + (
            f", robust {100 * v['robust_accuracy']:.1f}% (drop {100 * v['robust_drop']['drop']:+.1f} pt)"
            if "robust_accuracy" in v
            else ""
        )
        for name, v in row["variants"].items()
    ]
    return f"{row['model']} {row['target']}: " + "; ".join(parts)


if __name__ == "__main__":
    main()
