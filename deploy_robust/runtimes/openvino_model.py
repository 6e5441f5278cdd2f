"""The OpenVINO loader: a bundle's ONNX graph -> a compiled model, with its configuration and cache.

OpenVINO reads the ONNX file itself (Q/DQ pairs become its FakeQuantize, then integer kernels).
The compiled-model cache lives in this user's deploy-robust folder (never in a bundle someone
else wrote), keyed by OpenVINO on the graph and the configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy_robust.errors import UserError
from deploy_robust.home import user_home
from deploy_robust.runtimes.base import PRECISION_HINTS, RuntimeOptions


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("backend openvino needs OpenVINO: pip install openvino") from None
    return openvino


def compile_config(options: RuntimeOptions, *, profile: bool = False) -> dict[str, Any]:
    """OpenVINO properties for `options` (only those the user set; the rest stay OpenVINO's defaults)."""
    if options.precision_hint not in PRECISION_HINTS:
        raise UserError(f"--precision-hint must be one of {', '.join(PRECISION_HINTS)}; got {options.precision_hint}")
    config: dict[str, Any] = {}
    if options.precision_hint != "default":
        config["INFERENCE_PRECISION_HINT"] = options.precision_hint
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = int(options.threads)
    if options.streams:
        config["NUM_STREAMS"] = int(options.streams)
    if profile:
        config["PERF_COUNT"] = True
    return config


def compile_bundle_graph(model_path: Path, options: RuntimeOptions, *, profile: bool = False):
    """The compiled model of `model_path` on `options.device` (CPU by default)."""
    ov = import_openvino()
    core = ov.Core()
    if options.cache:
        cache = user_home() / "openvino-cache"
        try:
            cache.mkdir(parents=True, exist_ok=True, mode=0o700)
            core.set_property({"CACHE_DIR": str(cache)})
        except OSError:
            pass  # no cache: compile every time
    device = options.device or "CPU"
    try:
        model = core.read_model(str(model_path))
        return core.compile_model(model, device, compile_config(options, profile=profile))
    except RuntimeError as e:
        text = str(e).strip().splitlines()
        raise UserError(f"OpenVINO cannot compile {model_path} for {device}: {text[0] if text else type(e).__name__}") from None
