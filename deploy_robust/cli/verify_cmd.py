"""deploy-robust verify: accuracy and adversarial robustness of the engine that ships, with CI gates."""

from __future__ import annotations

import argparse

import torch

from deploy_robust import process_group
from deploy_robust.api import VerifyGates, VerifyRequest, verify
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json
from deploy_robust.errors import GateFailed, UserError
from deploy_robust.progress import set_quiet
from deploy_robust.runtimes import BACKENDS
from deploy_robust.verify import SUITES
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.report import markdown



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("--data", required=True, help="test set (any supported format)")
    parser.add_argument("--eps", required=True, help="radius on the [0,1] scale, e.g. 8/255 or 0.3")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--n", type=cli_args.positive_int, default=500,
                        help="points (the first N; default 500: a 95%% interval of about +-4 pt; the standard suite "
                             "costs about 3 s a point on a CIFAR ResNet-18 on 2 cores)")
    parser.add_argument("--suite", default="standard", choices=list(SUITES),
                        help="attacks, cascading (default standard); " + "; ".join(
                            f"{s.name}: {s.autoattack}" for s in SUITES.values() if s.autoattack))
    parser.add_argument("--backend", default="ort-cpu", help="engine backend (default ort-cpu)")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=128)
    parser.add_argument("--reference", metavar="MODEL", help="the float model: transfer attacks and a paired delta")
    parser.add_argument("--no-sweep", action="store_true", help="skip the accuracy-vs-eps curve (a sanity check on the first 100 points)")
    parser.add_argument("--no-bpda", action="store_true",
                        help="attack S with plain gradients (shows what gradient masking hides; not a verdict)")
    parser.add_argument("--eot", type=cli_args.positive_int, metavar="N",
                        help="EOT draws per gradient for a stochastic engine (default: the suite's; 1 = naive)")
    parser.add_argument("--attack-output", metavar="NAME",
                        help="graph output S's attacks use (default: the one the manifest names, e.g. an EMPIR "
                             "ensemble's averaged probabilities; 'logits' attacks the vote itself, which masks gradients)")
    parser.add_argument("--no-resume", action="store_true",
                        help="recompute every batch (by default an interrupted run resumes from its finished batches)")
    parser.add_argument("--workers", type=cli_args.positive_int, metavar="N",
                        help="verify in N processes of one torch.distributed group on this machine (as torchrun "
                             "--nproc-per-node N would; the CPU's threads are split among them): the same result "
                             "as one process")
    parser.add_argument("--gradient-precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the twin's gradients: auto (bf16 autocast on a float bundle where the CPU has native "
                             "bf16: AVX512_BF16 or AMX, and a pixel's budget is at least 4/256), fp32, or bf16; candidates are always scored on the engine")
    parser.add_argument("--attack-layout", default="auto", choices=["auto", "contiguous", "channels_last"],
                        help="memory layout the attacks run in (auto: the faster, timed; fix it for runs that must "
                             "match bit for bit across machines)")
    gates = parser.add_argument_group("gates (exit 1 when one fails)")
    gates.add_argument("--min-clean-acc", type=cli_args.fraction, metavar="X")
    gates.add_argument("--min-robust-acc", type=cli_args.fraction, metavar="X")
    gates.add_argument("--max-robust-drop", type=cli_args.fraction, metavar="X", help="R's robust accuracy minus E's (needs --reference)")
    gates.add_argument("--min-agreement", type=cli_args.fraction, metavar="X", help="top-1 agreement of E with R (needs --reference)")
    cli_args.add_runtime_args(parser)
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    if process_group.launched_by_env():          # a rank of torchrun's group, or of --workers'
        if args.workers:
            raise UserError("--workers starts its own process group; under torchrun, leave it out")
        return _run_rank(args)
    return _verify(args)   # `--workers N` (N > 1) never gets here: cli.main starts the ranks before importing this


def _run_rank(args: argparse.Namespace) -> int:
    """One rank: its share of the CPU's threads (or its own GPU), its shard of the batches; rank 0 prints."""
    if args.backend in BACKENDS and BACKENDS[args.backend].gpu:   # one GPU per rank: its LOCAL_RANK's
        process_group.pin_local_gpu()
    if args.threads is None:
        args.threads = max(1, process_group.cpu_count() // process_group.local_world_size())
    process_group.init_from_env("gloo")
    if process_group.rank() > 0:
        set_quiet(True)
    try:
        return _verify(args, show=process_group.rank() == 0)
    finally:
        process_group.leave()


def _verify(args: argparse.Namespace, show: bool = True) -> int:
    threads = torch.get_num_threads()
    if args.threads is not None:   # the attacks on S run in torch: the same thread budget as the engine
        torch.set_num_threads(args.threads)
    try:
        return _verify_and_print(args, show)
    finally:
        torch.set_num_threads(threads)   # an in-process caller (tests, the library) gets its own setting back


def _verify_and_print(args: argparse.Namespace, show: bool) -> int:
    options = VerifyOptions(n=args.n, suite=args.suite, backend=args.backend, batch_size=args.batch_size, seed=args.seed,
                            sweep=None if args.no_sweep else "auto", bpda=not args.no_bpda, eot=args.eot,
                            resume=not args.no_resume, layout=args.attack_layout, gradient_precision=args.gradient_precision,
                            attack_output=args.attack_output,
                            runtime=cli_args.runtime_options(args))
    result = verify(VerifyRequest(
        args.bundle, args.data, args.eps, norm=args.norm, options=options, reference=args.reference,
        model=cli_args.model_options(args),
        gates=VerifyGates(args.min_clean_acc, args.min_robust_acc, args.max_robust_drop, args.min_agreement)))
    if show and args.json:
        emit_json(result.document, "verify")
    elif show:
        print(markdown(result.document))
        if result.written:
            run = result.written[0].parent
            print(f"written {run}/ ({', '.join(p.name for p in result.written)}); the copies in "
                  f"{run.parent.parent}/ are the latest run's")
    if not result.passed:
        raise GateFailed(result.failure)
    return 0
