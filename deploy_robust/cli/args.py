"""Argument groups shared by several commands, and parsers for their values."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

from deploy_robust.api import ModelOptions
from deploy_robust.ingest import SpecOverrides
from deploy_robust.limits import MAX_SEED
from deploy_robust.runtimes.base import PRECISION_HINTS, RuntimeOptions


def number(text: str) -> float:
    """A finite float, also written as a fraction: 0.5, 8/255, 125.3/255."""
    try:
        value = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text}")
    return value


def fraction(text: str) -> float:
    """A gate threshold in [0, 1] (accuracy, agreement, a drop in accuracy)."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        hint = f" (did you mean {value / 100:g}?)" if 2 <= value <= 100 else ""
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1]; got {text}{hint}")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def duration(text: str) -> float:
    """A time span in seconds: `90s`, `30m`, `1.5h`, or a bare number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    body, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        value = float(body) * units[unit.lower()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 30m or 1.5h; got {text}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive, finite duration; got {text}")
    return value


def linf_eps(text: str) -> float:
    """An L-inf radius on [0, 1] images: 0 <= eps <= 1 (8 is refused with "did you mean 8/255?")."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        hint = f"; did you mean {text}/255?" if 1 < value <= 255 else ""
        raise argparse.ArgumentTypeError(f"an L-inf radius on [0, 1] images must lie in [0, 1]; got {text}{hint}")
    return value


def percentile(text: str) -> float:
    value = number(text)
    if not 0.0 < value <= 100.0:
        raise argparse.ArgumentTypeError(f"a percentile must lie in (0, 100]; got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def seed(text: str) -> int:
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, {MAX_SEED}]; got {text}")
    return value


def numbers(text: str) -> tuple[float, ...]:
    return tuple(number(t) for t in text.replace(" ", "").split(",") if t)


def shape(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be C,H,W integers; got {text}") from None
    if len(dims) != 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be three positive integers C,H,W; got {text}")
    return dims


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


MAX_THREADS = 4096  # runtimes take a C int; no machine this runs on has more hardware threads
MAX_STREAMS = 1024


def count_up_to(limit: int):
    """An argparse type: a whole number in [1, limit], the bound named in the message."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}: {text}")
        return value

    return parse


def device_name(text: str) -> str:
    """An OpenVINO device: CPU, GPU.1, AUTO:GPU,CPU, HETERO:GPU,CPU ... (letters, digits, '.', ':', ',', '_')."""
    if not text or not all(c.isalnum() or c in ".:,_-" for c in text):
        raise argparse.ArgumentTypeError(f"must name a device such as CPU, GPU.0 or AUTO:GPU,CPU; got {text!r}")
    return text


def add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and run control")
    group.add_argument("--json", action="store_true", help="print one JSON document instead of text; no progress")
    group.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (by default: a bar on a terminal, else a plain line with an ETA every 15 s "
        "for steps that run longer than 5 s)",
    )
    group.add_argument("--seed", type=seed, default=0, help=f"seed for every random choice, 0..{MAX_SEED} (default 0)")
    group.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def add_model_args(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """How to read a model file: its architecture, trust, and the input spec if it does not carry one."""
    group = parser.add_argument_group("model loading")
    group.add_argument(
        "--arch",
        help="architecture for a state_dict checkpoint: a built-in name "
        "(see `deploy-robust info --zoo`) or path/to/file.py:factory (imports and RUNS that file: "
        "your own code only)",
    )
    group.add_argument(
        "--trust-code",
        action="store_true",
        help="allow importing the architecture code a model file records (file.py:factory runs "
        "that file: trusted files only); by default only a file you name with --arch is imported",
    )
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling a whole pickled nn.Module (runs code from the file: trusted files only)",
    )
    group.add_argument(
        "--input-shape", type=shape, metavar="C,H,W", help="input shape, for models that do not record it"
    )
    group.add_argument(
        "--mean",
        type=numbers,
        metavar="M[,M,M]",
        help="normalization mean on the [0,1] scale (e.g. 0.4914,0.4822,0.4465)",
    )
    group.add_argument("--std", type=numbers, metavar="S[,S,S]", help="normalization std on the [0,1] scale")
    group.add_argument(
        "--num-classes", type=positive_int, metavar="N", help="number of classes (checked against the model)"
    )


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """How the engine is configured: the same flags for eval, bench and verify (a backend refuses what it
    does not take)."""
    group = parser.add_argument_group("runtime configuration")
    group.add_argument("--threads", type=count_up_to(MAX_THREADS), help="runtime threads (default: the runtime's)")
    group.add_argument(
        "--precision-hint",
        default="default",
        choices=list(PRECISION_HINTS),
        help="openvino: inference precision (default: OpenVINO's choice, bf16 on AMX / AVX-512 BF16 "
        "CPUs; f32 runs float layers in float32)",
    )
    group.add_argument(
        "--streams", type=count_up_to(MAX_STREAMS), help="openvino: parallel execution streams (default: OpenVINO's)"
    )
    group.add_argument(
        "--device",
        type=device_name,
        help="openvino: device name (default CPU; GPU and NPU are passed through, untested)",
    )
    group.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="openvino: do not cache compiled models in the deploy-robust folder",
    )


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    return RuntimeOptions(args.threads, args.device, args.streams, args.precision_hint, not args.no_compile_cache)


def overrides(args: argparse.Namespace) -> SpecOverrides:
    return SpecOverrides(args.input_shape, args.mean, args.std, args.num_classes)


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The model-loading options (`add_model_args`) as the library API takes them."""
    return ModelOptions(args.arch, args.trust_pickle, args.trust_code, overrides(args))
