"""deploy-robust verify: accuracy and adversarial robustness of the engine that ships, with CI gates."""

from __future__ import annotations

import argparse

from deploy_robust.bundle import open_bundle
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json
from deploy_robust.data import load_dataset
from deploy_robust.errors import GateFailed, UserError
from deploy_robust.ingest import load_model
from deploy_robust.verify import SUITES, ThreatModel, parse_eps, run_verify
from deploy_robust.verify.protocol import DEFAULT_SWEEP, reference_robust_accuracy
from deploy_robust.verify.report import markdown, write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle")
    parser.add_argument("--data", required=True, help="test set (any supported format)")
    parser.add_argument("--eps", required=True, help="radius on the [0,1] scale, e.g. 8/255 or 0.3")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--n", type=cli_args.positive_int, default=1000, help="points (the first N; default 1000)")
    parser.add_argument("--suite", default="standard", choices=list(SUITES))
    parser.add_argument("--backend", default="ort-cpu", help="engine backend (default ort-cpu)")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=128)
    parser.add_argument("--reference", metavar="MODEL", help="the float model: transfer attacks and a paired delta")
    parser.add_argument("--no-sweep", action="store_true", help="skip the accuracy-vs-eps curve")
    parser.add_argument("--no-bpda", action="store_true",
                        help="attack S with plain gradients (shows what gradient masking hides; not a verdict)")
    parser.add_argument("--eot", type=cli_args.positive_int, metavar="N",
                        help="EOT draws per gradient for a stochastic engine (default: the suite's; 1 = naive)")
    parser.add_argument("--attack-output", metavar="NAME",
                        help="graph output S's attacks use (default: the one the manifest names, e.g. an EMPIR "
                             "ensemble's averaged probabilities; 'logits' attacks the vote itself, which masks gradients)")
    parser.add_argument("--no-resume", action="store_true",
                        help="recompute every batch (by default an interrupted run resumes from its finished batches)")
    gates = parser.add_argument_group("gates (exit 1 when one fails)")
    gates.add_argument("--min-clean-acc", type=cli_args.fraction, metavar="X")
    gates.add_argument("--min-robust-acc", type=cli_args.fraction, metavar="X")
    gates.add_argument("--max-robust-drop", type=cli_args.fraction, metavar="X", help="R's robust accuracy minus E's (needs --reference)")
    gates.add_argument("--min-agreement", type=cli_args.fraction, metavar="X", help="top-1 agreement of E with R (needs --reference)")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    bundle = open_bundle(args.bundle)
    threat = ThreatModel(args.norm, parse_eps(args.eps))
    if (args.max_robust_drop is not None or args.min_agreement is not None) and not args.reference:
        raise UserError("--max-robust-drop and --min-agreement need --reference")
    dataset = load_dataset(args.data, bundle.spec.shape)
    reference = None
    if args.reference:
        reference = load_model(args.reference, args.arch, trust_pickle=args.trust_pickle, trust_code=args.trust_code,
                               overrides=cli_args.overrides(args)).reference()
    doc = run_verify(bundle, dataset, threat, n=args.n, suite=args.suite, reference=reference, backend=args.backend,
                     batch_size=args.batch_size, seed=args.seed, sweep=None if args.no_sweep else DEFAULT_SWEEP,
                     bpda=not args.no_bpda, eot=args.eot, resume=not args.no_resume, attack_output=args.attack_output)
    if reference is not None:  # the paired delta: R under the same white-box attacks on the same points
        value = reference_robust_accuracy(reference, dataset, threat, n=args.n, suite=args.suite,
                                          batch_size=args.batch_size, seed=args.seed)
        doc["reference_robust_accuracy"] = value
        doc["robust_delta_vs_reference"] = doc["robust_accuracy"] - value
    doc["gates"] = _gates(doc, args)
    written = write(bundle, doc)
    if args.json:
        emit_json(doc)
    else:
        print(markdown(doc))
        print("written " + ", ".join(str(p) for p in written))
    failed = [g for g in doc["gates"] if not g["passed"]]
    if failed:
        raise GateFailed("; ".join(f"{g['name']} {g['value']:.4f} {g['op']} {g['threshold']:g} fails" for g in failed))
    return 0


def _gates(doc, args) -> list[dict]:
    gates = []

    def gate(name, value, op, threshold):
        passed = value >= threshold if op == ">=" else value <= threshold
        gates.append({"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(passed)})

    if args.min_clean_acc is not None:
        gate("clean_accuracy", doc["clean_accuracy"], ">=", args.min_clean_acc)
    if args.min_robust_acc is not None:
        gate("robust_accuracy", doc["robust_accuracy"], ">=", args.min_robust_acc)
    if args.max_robust_drop is not None:
        gate("robust_drop_vs_reference", -doc["robust_delta_vs_reference"], "<=", args.max_robust_drop)
    if args.min_agreement is not None:
        gate("top1_agreement_with_reference", doc["models"]["R"]["top1_agreement_with_E"], ">=", args.min_agreement)
    return gates
