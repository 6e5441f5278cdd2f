"""deploy-robust ensemble: train (or assemble) an EMPIR mixed-precision ensemble into one checkpoint."""

from __future__ import annotations

import argparse
import sys

import torch

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json
from deploy_robust.data import load_dataset
from deploy_robust.defenses.empir import ARCHS, CHECKPOINT_KEY, SHAPES, build_ensemble, describe, parse_member
from deploy_robust.errors import UserError
from deploy_robust.evaluate import evaluate
from deploy_robust.model.checkpoint import extract_state_dict, read_checkpoint
from deploy_robust.model import PickOutput
from deploy_robust.runtimes.torch_runner import TorchRunner
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier


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
    members = [parse_member(text) for text in args.member]
    if len(members) < 2:
        raise UserError("an ensemble needs at least two --member")
    if args.combine == "vote" and sum(m["w_bits"] is None for m in members) != 1:
        raise UserError("--combine vote needs exactly one fp32 member (it breaks ties)")
    config = {
        "arch": args.arch,
        "members": [{k: m[k] for k in ("w_bits", "a_bits")} for m in members],
        "combine": args.combine,
        "num_classes": 10,
        "shape": list(SHAPES[args.arch]),
    }
    seed_everything(args.seed)
    ensemble = build_ensemble(config)
    train = None
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    for index, (spec, text, net) in enumerate(zip(members, args.member, ensemble.members)):
        if spec["checkpoint"]:
            net.load_state_dict(extract_state_dict(read_checkpoint(spec["checkpoint"]), spec["checkpoint"]))
            continue
        if train is None:
            if not args.data:
                raise UserError(f"--member {text} has no checkpoint: pass --data to train it")
            train = load_dataset(args.data, SHAPES[args.arch], split="train")
        log(
            f"training member {index} ({text.split(':')[0]}) on {train.name} ({len(train)} images, {args.epochs} epochs)"
        )
        train_classifier(net, train, epochs=args.epochs, seed=args.seed + index)
    ensemble.eval()
    report = {"out": args.out, "defense": describe(config)}
    if args.test:
        test = load_dataset(args.test, SHAPES[args.arch])
        report["accuracy"] = {
            text.split(":")[0] + f" (member {i})": evaluate(TorchRunner(net), test).accuracy
            for i, (text, net) in enumerate(zip(args.member, ensemble.members))
        }
        voted = PickOutput(ensemble, 0) if args.combine == "vote" else ensemble
        report["accuracy"]["ensemble"] = evaluate(TorchRunner(voted), test).accuracy
    torch.save({CHECKPOINT_KEY: config, "state_dict": ensemble.state_dict()}, args.out)
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
