"""deploy-robust dq: Defensive Quantization fine-tuning (-o model_dq.pt), exported on its trained grid.

    deploy-robust dq mnist_cnn_a_adv.model --bits 4/4 --beta 3e-4 --data mnist_train.npz \\
        --adv-train --eps 0.3 --test mnist_test.npz -o mnist_dq_w4a4.pt
    deploy-robust export mnist_dq_w4a4.pt --precision int8 -o mnist_dq_w4a4

--beta 0 is vanilla quantization-aware training; --epochs 0 is post-training quantization at
the same bit widths (calibrated bounds, no training): the baselines of the DQ paper.
"""

from __future__ import annotations

import argparse
import sys

from deploy_robust.api.training import DefensiveQuantizationRequest, defensive_quantize
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, pct, table
from deploy_robust.cli.train_cmd import add_training_args, training_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a trained model (state_dict + --arch, a built-in checkpoint, or a model file)")
    parser.add_argument(
        "--bits",
        required=True,
        metavar="W/A",
        help="weight/activation bits, 2..8 each, e.g. 4/4 (first and last layer weights stay 8-bit)",
    )
    parser.add_argument(
        "--beta",
        type=cli_args.number,
        default=3e-4,
        help="Lipschitz regularizer weight: loss + beta/2 * sum ||W W^T - I||^2 (0: plain QAT)",
    )
    parser.add_argument("--data", required=True, help="training images (also calibrate the activation bounds)")
    parser.add_argument(
        "--calib-n", type=cli_args.positive_int, default=512, help="images to calibrate bounds on (512)"
    )
    parser.add_argument(
        "--input-grid",
        default="uint8",
        choices=["uint8", "int8"],
        help="8-bit grid of the model input: uint8 (default; exports to ort-cpu, its fastest form) "
        "or int8 symmetric (exports to every target: ort-cpu, ort-cuda, tensorrt)",
    )
    parser.add_argument("--test", help="test images: clean and PGD accuracy of the original and the DQ model")
    parser.add_argument("--adv-train", action="store_true", help="same as --adv pgd (needs --eps)")
    parser.add_argument("--eval-n", type=cli_args.positive_int, default=500)
    parser.add_argument("-o", "--out", required=True, help="the DQ model file to write (.pt, weights only)")
    add_training_args(parser, epochs=5, lr=1e-3, adv="none")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    if args.adv_train:
        args.adv = "pgd"
    request = DefensiveQuantizationRequest(
        args.model,
        args.data,
        args.out,
        args.bits,
        args.beta,
        training_options(args),
        args.calib_n,
        args.input_grid,
        args.test,
        args.eval_n,
        cli_args.model_options(args),
    )
    log = (lambda *_: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = defensive_quantize(request, log)
    if args.json:
        emit_json(result.document, "dq")
        return 0
    module, training = result.model, result.document["training"]
    print(
        table(
            ["layer", "bits", "spectral norm before", "after"],
            [
                [name, _layer_bits(module, name), f"{v['before']:.3f}", f"{v['after']:.3f}"]
                for name, v in training["spectral_norms"].items()
            ],
        )
    )
    for name, e in training.get("evaluation", {}).items():
        print(
            f"  {name}: clean {pct(e['clean'])}, {e['attack']} at eps {e['eps']:g} (STE through the "
            f"quantizers): {pct(e['pgd'])} (n={e['n']})"
        )
    print(
        f"wrote {args.out} ({training['seconds']:.0f} s); next: deploy-robust export {args.out} --precision int8 -o OUT"
    )
    return 0


def _layer_bits(module, name: str) -> str:
    return str(getattr(module.get_submodule(name), "bits", "-"))
