"""deploy-robust eval: clean accuracy of a bundle or a model file, optionally against a reference."""

from __future__ import annotations

import argparse

from deploy_robust.api import EvalRequest, evaluate
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import ci, emit_json, pct, table
from deploy_robust.errors import GateFailed
from deploy_robust.runtimes import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="BUNDLE_OR_MODEL", help="a bundle directory or a model file")
    parser.add_argument(
        "--data", required=True, help="dataset: .npz, CIFAR-10 batches folder, MNIST idx, image folder, or 'digits'"
    )
    parser.add_argument("--split", default="test", choices=["test", "train"], help="split for multi-split datasets")
    parser.add_argument(
        "--backend", choices=list(BACKENDS), help="runtime (default: ort-cpu for a bundle, torch for a model)"
    )
    parser.add_argument("--n", type=cli_args.positive_int, help="use the first N images")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=256)
    parser.add_argument(
        "--reference",
        metavar="MODEL",
        help="model file to compare against (top-1 agreement, logit diff); the model-loading flags apply to it",
    )
    parser.add_argument(
        "--min-accuracy", type=cli_args.fraction, metavar="X", help="gate: exit 1 if accuracy < X (0..1)"
    )
    parser.add_argument(
        "--min-agreement",
        type=cli_args.fraction,
        metavar="X",
        help="gate: exit 1 if top-1 agreement with --reference < X (0..1)",
    )
    cli_args.add_runtime_args(parser)
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    result = evaluate(
        EvalRequest(
            args.target,
            args.data,
            split=args.split,
            backend=args.backend,
            n=args.n,
            batch_size=args.batch_size,
            runtime=cli_args.runtime_options(args),
            reference=args.reference,
            model=cli_args.model_options(args),
            min_accuracy=args.min_accuracy,
            min_agreement=args.min_agreement,
        )
    )
    if args.json:
        emit_json(result.document, "eval")
    else:
        _print(result.document)
    if not result.passed:
        raise GateFailed(result.failure)
    return 0


def _print(doc: dict) -> None:
    what = doc.get("bundle") or doc.get("model")
    print(f"{what} on {doc['dataset']} ({doc['n']} images, backend {doc['backend']})")
    rows = [["accuracy", f"{pct(doc['accuracy'])}  95% CI {ci(doc['accuracy_ci95'])}"]]
    if "reference" in doc:
        ref, agree = doc["reference"], doc["reference"]["agreement"]
        rows += [
            [f"reference ({ref['model']})", pct(ref["accuracy"])],
            ["top-1 agreement", pct(agree["top1_agreement"])],
            ["max |logit diff|", f"{agree['max_abs_logit_diff']:.3g}"],
            ["mean |logit diff|", f"{agree['mean_abs_logit_diff']:.3g}"],
        ]
    for g in doc["gates"]:
        rows.append([f"gate {g['name']} {g['op']} {g['threshold']:g}", "pass" if g["passed"] else "FAIL"])
    print(table(["metric", "value"], rows))
