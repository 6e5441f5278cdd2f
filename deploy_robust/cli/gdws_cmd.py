"""deploy-robust gdws: rewrite a model's convolutions as GDWS convolutions (-o model_gdws.pt)."""

from __future__ import annotations

import argparse
import sys

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.gdws_args import add_gdws_args, describe_plan, request_from_args
from deploy_robust.cli.output import emit_json, pct
from deploy_robust.data import load_dataset
from deploy_robust.evaluate import evaluate
from deploy_robust.ingest import LoadedModel, load_model
from deploy_robust.model.arch import is_code
from deploy_robust.model.model_file import portable_arch
from deploy_robust.runtimes.torch_runner import TorchRunner
from deploy_robust.transforms.gdws.checkpoint import save_gdws_checkpoint
from deploy_robust.transforms.gdws.rewrite import rewrite_model


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
    loaded = load_model(
        args.model,
        args.arch,
        trust_pickle=args.trust_pickle,
        trust_code=args.trust_code,
        overrides=cli_args.overrides(args),
    )
    request = request_from_args(args)
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    rewritten, plan = rewrite_model(loaded, request, log)
    report = {"model": args.model, "plan": plan.to_json()}
    if args.test:
        test = load_dataset(args.test, loaded.spec.shape)
        report["clean_accuracy"] = {
            name: evaluate(TorchRunner(m.reference()), test).accuracy
            for name, m in (("original", loaded), ("gdws", rewritten))
        }
    if args.out:
        save_gdws_checkpoint(args.out, rewritten.module, _arch_to_record(args.arch, loaded), loaded.spec, plan)
        report["out"] = args.out
    if args.json:
        emit_json(report, "gdws")
        return 0
    print(describe_plan(plan))
    for name, accuracy in report.get("clean_accuracy", {}).items():
        print(f"  clean accuracy ({name}): {pct(accuracy)}")
    if args.out:
        print(f"wrote {args.out}; next: deploy-robust export {args.out} -o OUT [--precision int8 --calib DATA]")
    else:
        print("(plan only: pass -o FILE to write the GDWS model)")
    return 0


def _arch_to_record(arch: str | None, loaded: LoadedModel) -> str | None:
    """The architecture a GDWS checkpoint is rebuilt from: a user file by its absolute path (so the
    checkpoint loads from any directory), a built-in one by name."""
    return portable_arch(arch) if arch and is_code(arch) else loaded.source["arch"]
