"""deploy-robust gdws: rewrite a model's convolutions as GDWS convolutions (-o model_gdws.pt)."""

from __future__ import annotations

import argparse
import sys

from deploy_robust.api.models import GDWSModelRequest, gdws
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.gdws_args import add_gdws_args, describe_plan, request_from_args
from deploy_robust.cli.output import emit_json, pct


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="state_dict checkpoint (+ --arch) or any model file load_model reads")
    parser.add_argument(
        "-o",
        "--out",
        help="GDWS checkpoint to write (weights only; export it like any checkpoint); "
        "without -o the plan is only printed",
    )
    parser.add_argument("--test", metavar="DATA", help="report clean accuracy of the original and GDWS models")
    add_gdws_args(parser)
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    request = GDWSModelRequest(args.model, request_from_args(args), args.out, args.test, cli_args.model_options(args))
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = gdws(request, log)
    report = result.document
    if args.json:
        emit_json(report, "gdws")
        return 0
    print(describe_plan(result.gdws_plan))
    for name, accuracy in report.get("clean_accuracy", {}).items():
        print(f"  clean accuracy ({name}): {pct(accuracy)}")
    if args.out:
        print(f"wrote {args.out}; next: deploy-robust export {args.out} -o OUT [--precision int8 --calib DATA]")
    else:
        print("(plan only: pass -o FILE to write the GDWS model)")
    return 0
