"""deploy-robust dq: Defensive Quantization fine-tuning (-o model_dq.pt), exported on its trained grid.

    deploy-robust dq mnist_cnn_a_adv.model --bits 4/4 --beta 3e-4 --data mnist_train.npz \\
        --adv-train --eps 0.3 --test mnist_test.npz -o mnist_dq_w4a4.pt
    deploy-robust export mnist_dq_w4a4.pt --precision int8 -o mnist_dq_w4a4

--beta 0 is vanilla quantization-aware training; --epochs 0 is post-training quantization at
the same bit widths (calibrated bounds, no training): the baselines of the DQ paper.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, pct, table
from deploy_robust.cli.train_cmd import add_training_args, perturb_from_args
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import save_model_file
from deploy_robust.normalize import with_normalization
from deploy_robust.train.distributed import local_device
from deploy_robust.train.evaluation import clean_and_pgd
from deploy_robust.transforms.dq import DQRequest, defensive_quantization


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a trained model (state_dict + --arch, a built-in checkpoint, or a model file)")
    parser.add_argument("--bits", required=True, metavar="W/A",
                        help="weight/activation bits, 2..8 each, e.g. 4/4 (first and last layer weights stay 8-bit)")
    parser.add_argument("--beta", type=cli_args.number, default=3e-4,
                        help="Lipschitz regularizer weight: loss + beta/2 * sum ||W W^T - I||^2 (0: plain QAT)")
    parser.add_argument("--data", required=True, help="training images (also calibrate the activation bounds)")
    parser.add_argument("--calib-n", type=cli_args.positive_int, default=512, help="images to calibrate bounds on (512)")
    parser.add_argument("--input-grid", default="uint8", choices=["uint8", "int8"],
                        help="8-bit grid of the model input: uint8 (default; exports to ort-cpu, its fastest form) "
                             "or int8 symmetric (exports to every target: ort-cpu, ort-cuda, tensorrt)")
    parser.add_argument("--test", help="test images: clean and PGD accuracy of the original and the DQ model")
    parser.add_argument("--adv-train", action="store_true", help="same as --adv pgd (needs --eps)")
    parser.add_argument("--eval-n", type=cli_args.positive_int, default=500)
    parser.add_argument("-o", "--out", required=True, help="the DQ model file to write (.pt, weights only)")
    add_training_args(parser, epochs=5, lr=1e-3, adv="none")
    cli_args.add_model_args(parser)


def parse_bits(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d)/(\d)", text.strip())
    if not match or not all(2 <= int(b) <= 8 for b in match.groups()):
        raise UserError(f"--bits must be W/A with 2..8 bits each, e.g. 4/4 or 8/8; got {text}")
    return int(match[1]), int(match[2])


def run(args: argparse.Namespace) -> int:
    w_bits, a_bits = parse_bits(args.bits)
    if args.epochs < 0:
        raise UserError(f"--epochs must be >= 0 (0: post-training quantization); got {args.epochs}")
    if args.beta < 0:
        raise UserError(f"--beta must be >= 0; got {args.beta}")
    if args.adv_train:
        args.adv = "pgd"
    perturb = perturb_from_args(args)
    loaded = load_model(args.model, args.arch, trust_pickle=args.trust_pickle, trust_code=args.trust_code, overrides=cli_args.overrides(args))
    arch = loaded.source.get("arch")
    if arch is None or loaded.source["format"] not in ("state_dict", "trained_model"):
        raise UserError(f"{loaded.source['file']}: dq writes a weights-only model file and needs a state_dict model "
                        "with a known architecture (--arch, a built-in checkpoint, or a `train` model file)")
    train = load_dataset(args.data, loaded.spec.shape, split="train")
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    kind = "post-training quantization" if args.epochs == 0 else ("QAT" if args.beta == 0 else f"DQ beta {args.beta:g}")
    log(f"{kind} of {loaded.source['file']} at w{w_bits}a{a_bits} on {train.name} ({args.epochs} epochs, adv {args.adv})")
    request = DQRequest(w_bits, a_bits, args.beta, args.epochs, args.lr, args.batch, args.calib_n, perturb, args.seed,
                        input_signed=args.input_grid == "int8", device=str(local_device(args.device)))
    started = time.perf_counter()
    module, config, report = defensive_quantization(loaded, train, request)
    training = {"kind": kind, "data": train.name, "bits": f"{w_bits}/{a_bits}", "beta": args.beta,
                "epochs": args.epochs, "lr": args.lr, "batch": args.batch, "adv": args.adv, "eps": args.eps,
                "steps": args.steps, "seed": args.seed, "source": loaded.source["file"],
                "seconds": round(time.perf_counter() - started, 1)} | report
    if args.test:
        test = load_dataset(args.test, loaded.spec.shape).take(args.eval_n)
        eps = args.eps or 0.0
        training["evaluation"] = {
            "original": clean_and_pgd(loaded.reference(), test, eps, seed=args.seed),
            "dq": clean_and_pgd(with_normalization(module, loaded.spec), test, eps, seed=args.seed)}
    save_model_file(args.out, module, arch, loaded.spec, training, dq=config.to_json())
    if args.json:
        emit_json({"out": args.out, "dq": config.to_json(), "training": training}, "dq")
        return 0
    norms = report["spectral_norms"]
    print(table(["layer", "bits", "spectral norm before", "after"],
                [[name, _layer_bits(module, name), f"{v['before']:.3f}", f"{v['after']:.3f}"] for name, v in norms.items()]))
    for name, e in training.get("evaluation", {}).items():
        print(f"  {name}: clean {pct(e['clean'])}, {e['attack']} at eps {e['eps']:g} (STE through the "
              f"quantizers): {pct(e['pgd'])} (n={e['n']})")
    print(f"wrote {args.out} ({training['seconds']:.0f} s); next: deploy-robust export {args.out} --precision int8 -o OUT")
    return 0


def _layer_bits(module, name: str) -> str:
    return str(getattr(module.get_submodule(name), "bits", "-"))
