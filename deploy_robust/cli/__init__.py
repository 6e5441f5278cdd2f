"""The `deploy-robust` command: a registry of tools, each a module with add_arguments() and run().

Exit codes: 0 ok, 1 a gate failed, 2 bad input or usage, 3 a `--workers` process died. Errors print one line
(`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deploy_robust import __version__
from deploy_robust.errors import EXIT_BAD_INPUT, GateFailed, UserError
from deploy_robust.cli.output import emit_error
from deploy_robust.progress import set_quiet

# Tool modules, imported only when their command runs (so `--help` stays fast).
TOOLS = {
    "export": ("deploy_robust.cli.export_cmd", "export a model to a bundle (model.onnx + manifest.json)"),
    "eval": ("deploy_robust.cli.eval_cmd", "clean accuracy of a bundle or model, optionally vs a reference"),
    "info": ("deploy_robust.cli.info_cmd", "describe a bundle, a model file, or the built-in architectures"),
    "verify": ("deploy_robust.cli.verify_cmd", "robust accuracy of the engine under adaptive attacks, with CI gates"),
    "bench": ("deploy_robust.cli.bench_cmd", "latency/throughput of bundles on real runtimes; --compare for ratios"),
    "gdws": (
        "deploy_robust.cli.gdws_cmd",
        "rewrite convolutions as generalized depthwise-separable ones (-o model_gdws.pt)",
    ),
    "train": (
        "deploy_robust.cli.train_cmd",
        "adversarial training (PGD / FGSM), resumable, torchrun-ready (-o model.pt)",
    ),
    "dq": ("deploy_robust.cli.dq_cmd", "Defensive Quantization fine-tuning at W/A bits (-o model_dq.pt)"),
    "ensemble": ("deploy_robust.cli.ensemble_cmd", "train or assemble an EMPIR mixed-precision ensemble (-o ens.pt)"),
    "tune": ("deploy_robust.cli.tune_cmd", "the fastest bundle on a target runtime that keeps its verified robustness"),
    "demo": ("deploy_robust.cli.demo_cmd", "the whole pipeline on an embedded default, no downloads"),
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line and exit 2, like every other bad input (`--help` shows the usage)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"deploy-robust: error: {self.prog.split(' ', 1)[-1]}: {message}\n")


def _workers_asked(argv: list[str]) -> int:
    """N of a well-formed `verify ... --workers N` (N > 1) outside a process group; 0 otherwise (the full parser
    then handles it, errors included)."""
    import os

    if next((a for a in argv if a in TOOLS), None) != "verify" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 0
    for i, arg in enumerate(argv):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--workers=")
            else (argv[i + 1] if arg == "--workers" and i + 1 < len(argv) else None)
        )
        if value is not None:
            return int(value) if value.isdigit() and int(value) > 1 else 0
    return 0


def one_line(text: str) -> str:
    """A message on one line, whatever a library put in it (a YAML parser's caret diagram, ...)."""
    return " ".join(text.split())


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from deploy_robust.cli.args import add_common

    parser = OneLineParser(
        prog="deploy-robust", description="Deploy adversarially robust image classifiers, and verify they stay robust."
    )
    parser.add_argument("--version", action="version", version=f"deploy-robust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in TOOLS), None)
    for name, (module_name, help_text) in TOOLS.items():
        tool_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the tool that runs is imported and gets its full arguments
            module = importlib.import_module(module_name)
            module.add_arguments(tool_parser)
            add_common(tool_parser)
            tool_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    workers = _workers_asked(argv)
    if workers:  # start the ranks before importing torch and the stages here: each rank imports them itself
        from deploy_robust.cli.workers import run_workers, without_workers

        return run_workers(without_workers(argv), workers)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed on one line)
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_BAD_INPUT
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    set_quiet(args.json or args.quiet)
    try:
        return int(args.run(args) or 0)
    except (UserError, GateFailed) as e:
        if args.debug:
            raise
        kind = "gate failed" if isinstance(e, GateFailed) else "error"
        print(f"deploy-robust: {kind}: {one_line(str(e))}", file=sys.stderr)
        if args.json and isinstance(e, UserError):  # a failed gate's document, gates included, is already out
            emit_error(args.command, one_line(str(e)), e.exit_code)
        return e.exit_code
    except OSError as e:  # the file system said no: a missing parent, a read-only or full disk
        if args.debug:
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        message = f"{one_line(e.strerror or str(e) or type(e).__name__)}{where}"
        print(f"deploy-robust: error: {message}", file=sys.stderr)
        if args.json:
            emit_error(args.command, message, EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("deploy-robust: interrupted", file=sys.stderr)
        return 130
