"""deploy-robust demo: the whole pipeline on an embedded default (no downloads), or on your model."""

from __future__ import annotations

import argparse
import sys

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import ci, emit_json, pct, size, table
from deploy_robust.demo import run_demo
from deploy_robust.verify import parse_eps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", default="demo-out", help="output directory (default demo-out)")
    parser.add_argument("--model", help="your model file instead of training the default")
    parser.add_argument("--data", help="test set for --model")
    parser.add_argument("--calib", help="calibration images for --model's INT8/INT4 bundles (default: --data)")
    parser.add_argument("--epochs", type=cli_args.positive_int, default=40, help="training epochs for the default model")
    parser.add_argument("--eps", default="0.1", help="L-inf radius for the quick verify of each bundle (0 to skip; default 0.1)")
    parser.add_argument("--bench-seconds", type=cli_args.positive_number, default=1.0,
                        help="seconds each bundle is timed per batch size and round (default 1; less is noisier)")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = run_demo(args.out, model=args.model, arch=args.arch, data=args.data, overrides=cli_args.overrides(args),
                      trust_pickle=args.trust_pickle, trust_code=args.trust_code, calib=args.calib, epochs=args.epochs, seed=args.seed,
                      verify_eps=parse_eps(args.eps) or None, bench_seconds=args.bench_seconds, log=log)
    if args.json:
        emit_json(result.to_json(), "demo")
        return 0
    rows = []
    for r in result.rows:
        agree = r.get("agreement")
        speed = r.get("throughput", {})
        rows.append([r["name"], r["backend"], pct(r["accuracy"]), ci(r["accuracy_ci95"]),
                     pct(agree["top1_agreement"]) if agree else "-",
                     f"{agree['max_abs_logit_diff']:.2g}" if agree else "-",
                     size(r["model_bytes"]) if "model_bytes" in r else "-",
                     f"{speed['1']:.0f}" if speed else "-", f"{speed['32']:.0f}" if speed else "-",
                     pct(r["robust_accuracy"]) if "robust_accuracy" in r else "-"])
    print(f"\n{result.dataset}: {result.n} test images")
    robust = f"robust @{result.verify_eps:g}" if result.verify_eps else "robust"
    print(table(["model", "backend", "accuracy", "95% CI", "top-1 agree w/ ref", "max |dlogit|", "model.onnx",
                 "img/s b1", "img/s b32", robust], rows))
    if result.verify_eps:
        flagged = [f"{r['name']}: {', '.join(r['flags'])}" for r in result.rows if r.get("flags")]
        print(f"\nrobust = per-example worst case over FGSM, PGD-20 (on the twin), Square (on the engine) and transfer "
              f"from the float model, L-inf eps {result.verify_eps:g}, first 200 test images"
              + (f"\nflags: {'; '.join(flagged)}" if flagged else ""))
    print(f"\nbundles in {result.out}/ (each with bench.json); frontier plot: {result.frontier}")
    print(f"next: deploy-robust info {result.out}/int8 ; deploy-robust bench --compare {result.out}/fp32 {result.out}/int8")
    if result.verify_eps:
        print(f"verify report: {result.out}/int8/report.html (and report.md, verify.json in every bundle)")
    return 0
