"""deploy-robust train: (adversarial) training of a classifier, resumable, under torchrun or alone.

    deploy-robust train --arch cifar_cnn_a_adv --data cifar10_train.npz --test cifar10_test.npz \\
        --adv pgd --eps 2/255 --steps 7 --epochs 20 --checkpoint run.ckpt -o model.pt
    torchrun --nproc_per_node 2 -m deploy_robust train ...   # DistributedDataParallel

The output is a weights-only model file that `export`, `verify` and `dq` read without --arch.
"""

from __future__ import annotations

import argparse
import sys
import time

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, pct
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.model import arch as arch_resolver
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import save_model_file
from deploy_robust.normalize import normalizer, with_normalization
from deploy_robust.seeding import seed_everything
from deploy_robust.train import distributed, make_perturb, train_classifier
from deploy_robust.train.evaluation import clean_and_pgd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="a built-in architecture (deploy-robust info --zoo)")
    parser.add_argument("--data", required=True, help="training images (.npz, CIFAR-10 batches, MNIST idx, folder, digits)")
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
    group.add_argument("--lr", type=cli_args.positive_number, default=lr, help=f"peak learning rate of the one-cycle Adam "
                       f"schedule ({lr:g})")
    group.add_argument("--adv", default=adv, choices=["none", "fgsm", "pgd"],
                       help=f"adversarial training: PGD (Madry et al.), FGSM with random start, or none (default {adv})")
    group.add_argument("--eps", type=cli_args.linf_eps, default=None,
                       help="L-inf radius on [0,1] images, e.g. 2/255 or 0.3 (required unless --adv none)")
    group.add_argument("--steps", type=cli_args.positive_int, default=7, help="PGD steps per batch (7)")
    group.add_argument("--step-size", type=cli_args.positive_number, default=None, help="attack step (default 2.5 eps / steps)")
    group.add_argument("--augment", action="store_true", help="random crops and flips (CIFAR-style)")
    group.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="where to train: auto = CUDA when torch sees a GPU (under torchrun, LOCAL_RANK's)")


def perturb_from_args(args: argparse.Namespace):
    if args.adv != "none" and args.eps is None:
        raise UserError(f"--adv {args.adv} needs --eps (e.g. 2/255)")
    return make_perturb(args.adv, args.eps or 0.0, args.steps, args.step_size)


def training_settings(args: argparse.Namespace, data_name: str, world: int, device: str) -> dict:
    return {"data": data_name, "epochs": args.epochs, "batch_per_process": args.batch, "processes": world,
            "lr": args.lr, "adv": args.adv, "eps": args.eps, "steps": args.steps, "step_size": args.step_size,
            "augment": args.augment, "seed": args.seed, "device": device}


def run(args: argparse.Namespace) -> int:
    distributed.init_from_env()
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1; got {args.epochs}")
    architecture = arch_resolver.resolve(args.arch)
    if architecture.spec is None:
        raise UserError(f"--arch {args.arch}: a user architecture needs its input spec; train it with a built-in "
                        "name or wrap it in a model file")
    spec = architecture.spec
    perturb = perturb_from_args(args)
    train = load_dataset(args.data, spec.shape, split="train")
    seed_everything(args.seed)  # the initial weights come from the seed too
    model = architecture.build(spec.num_classes)
    if args.init:
        model.load_state_dict(load_model(args.init, args.arch).module.state_dict())
        for p in model.parameters():
            p.requires_grad_(True)
    device = distributed.local_device(args.device)
    model.to(device)
    lead = distributed.rank() == 0
    log = (lambda *_: None) if (args.json or not lead) else (lambda msg: print(msg, file=sys.stderr))
    log(f"training {architecture.name} on {train.name} ({len(train)} images, {args.epochs} epochs, "
        f"adv {args.adv}{'' if args.adv == 'none' else f' eps {args.eps:g}'}, {distributed.world_size()} process(es))")
    started = time.perf_counter()
    losses = train_classifier(model, train, epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed,
                              input_transform=normalizer(spec), augment=args.augment, perturb=perturb,
                              checkpoint=args.checkpoint, resume=args.resume,
                              on_epoch=lambda e, loss: log(f"  epoch {e + 1}/{args.epochs}: loss {loss:.4f}"))
    model.cpu()
    settings = training_settings(args, train.name, distributed.world_size(), str(device)) | {
        "seconds": round(time.perf_counter() - started, 1), "losses": [round(v, 5) for v in losses]}
    if not lead:
        return 0
    report = {"out": args.out, "arch": architecture.name, "training": settings}
    if args.test:
        test = load_dataset(args.test, spec.shape).take(args.eval_n)
        report["evaluation"] = clean_and_pgd(with_normalization(model, spec), test, args.eps or 0.0,
                                             steps=args.eval_steps, restarts=args.eval_restarts, seed=args.seed)
        settings["evaluation"] = report["evaluation"]
    save_model_file(args.out, model, args.arch, spec, settings)
    if args.json:
        emit_json(report, "train")
    else:
        if "evaluation" in report:
            e = report["evaluation"]
            print(f"  clean {pct(e['clean'])}, {e['attack']} at eps {e['eps']:g}: {pct(e['pgd'])} (n={e['n']})")
        print(f"wrote {args.out} ({settings['seconds']:.0f} s); next: deploy-robust export {args.out} -o OUT")
    return 0
