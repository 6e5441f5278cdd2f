"""deploy-robust eval: clean accuracy of a bundle or a model file, optionally against a reference."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy_robust.bundle import is_bundle, open_bundle
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import ci, emit_json, pct, table
from deploy_robust.data import load_dataset
from deploy_robust.errors import GateFailed, UserError
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import BACKENDS, create_runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="BUNDLE_OR_MODEL", help="a bundle directory or a model file")
    parser.add_argument("--data", required=True, help="dataset: .npz, CIFAR-10 batches folder, MNIST idx, image folder, or 'digits'")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="split for multi-split datasets")
    parser.add_argument("--backend", choices=list(BACKENDS), help="runtime (default: ort-cpu for a bundle, torch for a model)")
    parser.add_argument("--n", type=cli_args.positive_int, help="use the first N images")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=256)
    parser.add_argument("--threads", type=cli_args.positive_int, help="runtime threads (default: the runtime's)")
    parser.add_argument("--reference", metavar="MODEL", help="model file to compare against (top-1 agreement, logit diff); "
                        "the model-loading flags apply to it")
    parser.add_argument("--min-accuracy", type=cli_args.fraction, metavar="X", help="gate: exit 1 if accuracy < X (0..1)")
    parser.add_argument("--min-agreement", type=cli_args.fraction, metavar="X",
                        help="gate: exit 1 if top-1 agreement with --reference < X (0..1)")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    overrides = cli_args.overrides(args)
    if is_bundle_path(args.target):
        bundle = open_bundle(args.target)
        spec, backend = bundle.spec, args.backend or "ort-cpu"
        runner = create_runner(backend, bundle, threads=args.threads)
        subject = {"bundle": str(bundle.path), "precision": bundle.precision}
    else:
        loaded = load_model(args.target, args.arch, trust_pickle=args.trust_pickle, trust_code=args.trust_code, overrides=overrides)
        spec, backend = loaded.spec, args.backend or "torch"
        if backend.startswith("ort"):
            raise UserError(f"backend {backend} runs bundles; export the model first (deploy-robust export)")
        runner = create_runner(backend, module=loaded.reference())
        subject = {"model": loaded.source["file"]}
    dataset = load_dataset(args.data, spec.shape, split=args.split, limit=args.n)
    result = evaluate(runner, dataset, args.batch_size)
    doc = subject | {"backend": backend, "dataset": dataset.name} | result.to_json()
    if args.reference:
        reference = load_model(args.reference, args.arch, trust_pickle=args.trust_pickle, trust_code=args.trust_code, overrides=overrides)
        ref_result = evaluate(create_runner("torch", module=reference.reference()), dataset, args.batch_size)
        doc["reference"] = {"model": reference.source["file"], "accuracy": ref_result.accuracy,
                            "agreement": compare_logits(result.logits, ref_result.logits).to_json()}
    gates = _gates(args, doc)
    doc["gates"] = gates
    if args.json:
        emit_json(doc)
    else:
        _print(doc)
    failed = [g for g in gates if not g["passed"]]
    if failed:
        raise GateFailed("; ".join(f"{g['name']} {g['value']:.4f} < {g['threshold']:.4f}" for g in failed))
    return 0


def is_bundle_path(target: str) -> bool:
    return is_bundle(Path(target))


def _gates(args: argparse.Namespace, doc: dict) -> list[dict]:
    gates = []
    if args.min_accuracy is not None:
        gates.append({"name": "accuracy", "value": doc["accuracy"], "threshold": args.min_accuracy,
                      "passed": doc["accuracy"] >= args.min_accuracy})
    if args.min_agreement is not None:
        if "reference" not in doc:
            raise UserError("--min-agreement needs --reference")
        value = doc["reference"]["agreement"]["top1_agreement"]
        gates.append({"name": "top1_agreement", "value": value, "threshold": args.min_agreement,
                      "passed": value >= args.min_agreement})
    return gates


def _print(doc: dict) -> None:
    what = doc.get("bundle") or doc.get("model")
    print(f"{what} on {doc['dataset']} ({doc['n']} images, backend {doc['backend']})")
    rows = [["accuracy", f"{pct(doc['accuracy'])}  95% CI {ci(doc['accuracy_ci95'])}"]]
    if "reference" in doc:
        ref, agree = doc["reference"], doc["reference"]["agreement"]
        rows += [[f"reference ({ref['model']})", pct(ref["accuracy"])],
                 ["top-1 agreement", pct(agree["top1_agreement"])],
                 ["max |logit diff|", f"{agree['max_abs_logit_diff']:.3g}"],
                 ["mean |logit diff|", f"{agree['mean_abs_logit_diff']:.3g}"]]
    for g in doc["gates"]:
        rows.append([f"gate {g['name']} >= {g['threshold']:g}", "pass" if g["passed"] else "FAIL"])
    print(table(["metric", "value"], rows))
