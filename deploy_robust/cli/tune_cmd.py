"""deploy-robust tune: the fastest bundle on the target runtime that keeps its verified robustness."""

from __future__ import annotations

import argparse

from deploy_robust.api import TuneRequest, tune
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json
from deploy_robust.errors import GateFailed, UserError
from deploy_robust.tune.options import SENSITIVITIES, TuneOptions
from deploy_robust.tune.report import report
from deploy_robust.targets import TARGETS
from deploy_robust.tune.space import GDWS_BUDGETS, parse_pins
from deploy_robust.verify import ThreatModel, parse_eps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the trained model (any supported format)")
    parser.add_argument("-o", "--out", required=True, help="folder for best/, frontier.json, frontier.png, report.md "
                                                            "and the cache a rerun reuses")
    parser.add_argument("--cache", metavar="DIR", help="the cache folder (default OUT/cache); tunes of the same model, "
                        "target, data and seed may share one, e.g. a robust- and a clean-driven tune, one at a time")
    parser.add_argument("--target", default="ort-cpu", choices=list(TARGETS), help="the runtime that ships (default ort-cpu)")
    parser.add_argument("--calib", required=True, help="calibration images (also the per-layer sensitivity sample)")
    parser.add_argument("--data", required=True, help="test images the candidates are verified on")
    parser.add_argument("--eps", required=True, help="radius on the [0,1] scale, e.g. 2/255 or 0.3")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--max-robust-drop", type=cli_args.fraction, default=0.01, metavar="X",
                        help="paired robust-accuracy drop allowed against FP32 (default 0.01)")
    parser.add_argument("--max-clean-drop", type=cli_args.fraction, default=0.01, metavar="X",
                        help="paired clean-accuracy drop allowed against FP32 (default 0.01)")
    parser.add_argument("--batch", type=cli_args.positive_int, default=1, help="batch size latency is measured at (1)")
    parser.add_argument("--objective", default="latency", choices=["latency", "throughput"],
                        help="minimize ms per batch (latency) or ms per image (throughput)")
    parser.add_argument("--latency-budget-ms", type=cli_args.positive_number, metavar="MS",
                        help="also require the pick to take at most this (in the objective's unit)")
    parser.add_argument("--objective-metric", default="robust", choices=["robust", "clean"],
                        help="what sensitivities and the budget check (clean: the clean-driven baseline)")
    parser.add_argument("--sensitivities", default="in-memory", choices=list(SENSITIVITIES),
                        help="how each layer's sensitivity is measured: lowered inside the torch model (in-memory, "
                             "default) or from an exported single-layer bundle (exported: GPTQ weights, slower)")
    parser.add_argument("--space", metavar="P,P", help="per-layer precisions to search (default: all the target runs; "
                        "`precision` means all of them), plus `gdws` for GDWS rewrites at --gdws-budgets, "
                        "e.g. precision,gdws or int8,gdws")
    parser.add_argument("--gdws-budgets", type=cli_args.numbers, default=GDWS_BUDGETS, metavar="R,R",
                        help="with gdws in --space: fractions of the rewritable convolutions' MACs to keep "
                             f"(default {','.join(f'{b:g}' for b in GDWS_BUDGETS)})")
    parser.add_argument("--pin", action="append", default=[], metavar="LAYER=P",
                        help="fix a layer's precision in every plan, e.g. --pin 0=fp32 (names as `info` lists them; "
                             "repeat, or separate with commas)")
    parser.add_argument("--time-budget", type=cli_args.duration, metavar="T",
                        help="stop measuring and searching after T (90s, 30m, 1.5h) and pick from what was verified; "
                             "a rerun with more time continues from the cache")
    parser.add_argument("--min-gain", type=float, default=0.05, metavar="F",
                        help="a contender replaces a verified pick only if, timed again beside it, it is at least "
                             "this fraction faster (0.05); below that its final check is not worth its time")
    parser.add_argument("--n", type=cli_args.positive_int, default=200, help="test points for candidates (quick suite)")
    parser.add_argument("--final-n", type=cli_args.positive_int, default=500,
                        help="test points for the pick's standard-suite verification (500)")
    parser.add_argument("--threads", type=cli_args.positive_int, help="runtime threads for the latency measurements")
    parser.add_argument("--bench-seconds", type=cli_args.positive_number, default=2.0, metavar="S",
                        help="seconds per bundle in each interleaved benchmark, over 3 rounds (2)")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    space = tuple(p.strip() for p in args.space.split(",") if p.strip()) if args.space else None
    if space is not None and not space:
        raise UserError("--space needs precisions, e.g. int8,int4")
    options = TuneOptions(ThreatModel(args.norm, parse_eps(args.eps)), target=args.target,
                          max_robust_drop=args.max_robust_drop, max_clean_drop=args.max_clean_drop, batch=args.batch,
                          objective=args.objective, metric=args.objective_metric, space=space, n=args.n,
                          final_n=args.final_n, seed=args.seed, threads=args.threads,
                          latency_budget_ms=args.latency_budget_ms, bench_seconds=args.bench_seconds,
                          pins=parse_pins(args.pin, args.target), time_budget_s=args.time_budget,
                          gdws_budgets=tuple(args.gdws_budgets), sensitivities=args.sensitivities,
                          min_gain=args.min_gain)
    result = tune(TuneRequest(args.model, args.out, args.calib, args.data, options, cli_args.model_options(args),
                              args.cache))
    doc = result.document
    if args.json:
        emit_json(doc, "tune")
    else:
        print(report(doc))
        print("written " + ", ".join(str(p) for p in result.written))
    if doc["pick"] is None:
        holding = [r for r in doc["measured"] if r["holds"] and r.get("latency_ms") is not None]
        best = min(holding, key=lambda r: r["latency_ms"])["name"] if holding else "none"
        why = (f"none within --latency-budget-ms {args.latency_budget_ms:g}" if args.latency_budget_ms is not None
               else "none held the final verification")
        raise GateFailed(f"no plan met the budget ({why}; fastest that held the quick check: {best}; "
                         f"see {args.out}/report.md)")
    return 0
