"""deploy-robust train: (adversarial) training of a classifier, resumable, under torchrun or alone.

    deploy-robust train --arch cifar_cnn_a_adv --data cifar10_train.npz --test cifar10_test.npz \\
        --adv pgd --eps 2/255 --steps 7 --epochs 20 --checkpoint run.ckpt -o model.pt
    torchrun --nproc_per_node 2 -m deploy_robust train ...   # DistributedDataParallel

The output is a weights-only model file that `export`, `verify` and `dq` read without --arch.
"""

from __future__ import annotations

import argparse
import sys

from deploy_robust.api.training import PGDEvaluation, TrainingOptions, TrainRequest, train
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, pct
from deploy_robust.train import distributed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="a built-in architecture (deploy-robust info --zoo)")
    parser.add_argument(
        "--data", required=True, help="training images (.npz, CIFAR-10 batches, MNIST idx, folder, digits)"
    )
    parser.add_argument("--test", help="test images for the final clean / PGD evaluation")
    parser.add_argument("--init", help="start from these weights (a model file or state_dict for --arch)")
    add_training_args(parser)
    parser.add_argument("--checkpoint", help="run state written after every epoch (weights, optimizer, schedule)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    parser.add_argument("--eval-n", type=cli_args.positive_int, default=500, help="test images for the final PGD (500)")
    parser.add_argument("--eval-steps", type=cli_args.positive_int, default=20)
    parser.add_argument("--eval-restarts", type=cli_args.positive_int, default=2)
    parser.add_argument("-o", "--out", required=True, help="the trained model file to write (.pt, weights only)")


def add_training_args(parser: argparse.ArgumentParser, epochs: int = 10, lr: float = 3e-3, adv: str = "pgd") -> None:
    """Optimization and adversarial-training flags shared by `train` and `dq`."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training data ({epochs})")
    group.add_argument("--batch", type=cli_args.positive_int, default=128, help="images per process per step (128)")
    group.add_argument(
        "--lr",
        type=cli_args.positive_number,
        default=lr,
        help=f"peak learning rate of the one-cycle Adam schedule ({lr:g})",
    )
    group.add_argument(
        "--adv",
        default=adv,
        choices=["none", "fgsm", "pgd"],
        help=f"adversarial training: PGD (Madry et al.), FGSM with random start, or none (default {adv})",
    )
    group.add_argument(
        "--eps",
        type=cli_args.linf_eps,
        default=None,
        help="L-inf radius on [0,1] images, e.g. 2/255 or 0.3 (required unless --adv none)",
    )
    group.add_argument("--steps", type=cli_args.positive_int, default=7, help="PGD steps per batch (7)")
    group.add_argument(
        "--step-size", type=cli_args.positive_number, default=None, help="attack step (default 2.5 eps / steps)"
    )
    group.add_argument("--augment", action="store_true", help="random crops and flips (CIFAR-style)")
    group.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to train: auto = CUDA when torch sees a GPU (under torchrun, LOCAL_RANK's)",
    )


def training_options(args: argparse.Namespace) -> TrainingOptions:
    """The `training` flag group as the options `train` and `dq` take."""
    return TrainingOptions(
        args.epochs,
        args.batch,
        args.lr,
        args.adv,
        args.eps,
        args.steps,
        args.step_size,
        args.augment,
        args.device,
        args.seed,
    )


def run(args: argparse.Namespace) -> int:
    evaluation = PGDEvaluation(args.test, args.eval_n, args.eval_steps, args.eval_restarts) if args.test else None
    request = TrainRequest(
        args.arch, args.data, args.out, training_options(args), evaluation, args.init, args.checkpoint, args.resume
    )
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = train(request, log)
    if distributed.rank() != 0:
        return 0
    report = result.document
    if args.json:
        emit_json(report, "train")
    else:
        if "evaluation" in report:
            e = report["evaluation"]
            print(f"  clean {pct(e['clean'])}, {e['attack']} at eps {e['eps']:g}: {pct(e['pgd'])} (n={e['n']})")
        print(f"wrote {args.out} ({report['training']['seconds']:.0f} s); next: deploy-robust export {args.out} -o OUT")
    return 0
