"""deploy-robust ensemble: train (or assemble) an EMPIR mixed-precision ensemble into one checkpoint."""

from __future__ import annotations

import argparse
import sys

from deploy_robust.api.models import EnsembleRequest, ensemble
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json
from deploy_robust.defenses.empir import ARCHS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="SPEC",
        help="fp32 or wXaY (DoReFa bits), optionally :member.pt to reuse trained weights; repeat "
        "(EMPIR's sets: MNIST --member w2a4 --member w2a4 --member fp32; "
        "CIFAR-10 --member w4a2 --member w2a2 --member fp32)",
    )
    parser.add_argument("--arch", required=True, choices=ARCHS, help="member architecture (inputs in [0,1])")
    parser.add_argument("--data", help="training images for members without a checkpoint")
    parser.add_argument("--test", help="test images: report each member's and the ensemble's accuracy")
    parser.add_argument("--epochs", type=cli_args.positive_int, default=10)
    parser.add_argument(
        "--combine",
        default="vote",
        choices=["vote", "average"],
        help="majority vote, full-precision member breaks ties (default), or averaged probabilities",
    )
    parser.add_argument("-o", "--out", required=True, help="the ensemble checkpoint to write (.pt, weights only)")


def run(args: argparse.Namespace) -> int:
    request = EnsembleRequest(
        tuple(args.member), args.arch, args.out, args.data, args.test, args.epochs, args.combine, args.seed
    )
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    report = ensemble(request, log).document
    if args.json:
        emit_json(report, "ensemble")
    else:
        for name, acc in report.get("accuracy", {}).items():
            print(f"  {name}: {100 * acc:.2f}%")
        print(
            f"wrote {args.out}: EMPIR {', '.join(report['defense']['members'])} ({args.combine}); "
            f"next: deploy-robust export {args.out} -o OUT"
        )
    return 0
