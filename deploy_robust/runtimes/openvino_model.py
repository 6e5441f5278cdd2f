"""The OpenVINO loader: a bundle's ONNX graph -> a compiled model, with its configuration and cache.

OpenVINO reads the ONNX file itself (Q/DQ pairs become its FakeQuantize, then integer kernels).
The compiled-model cache lives in this user's deploy-robust folder (never in a bundle someone
else wrote), keyed by OpenVINO on the graph and the configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.errors import UserError
from deploy_robust.hashing import sha256_bytes
from deploy_robust.home import user_home
from deploy_robust.kernels.int4_widen import dequantize_small_int4_gemm_weights, widen_int4_conv_weights
from deploy_robust.runtimes.base import PRECISION_HINTS, RuntimeOptions


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("backend openvino needs OpenVINO: pip install openvino") from None
    return openvino


def widened_copy(model_path: Path) -> Path:
    """`model_path`, or where its INT4 conv weights are widened to INT8 (the same integers and scales, so the
    same numbers) a copy in the user's folder, named by content hash: OpenVINO then runs its INT8 kernels
    instead of dequantizing INT4 (kernels/int4_widen.py; measured about 0.4x INT8 speed without)."""
    if model_path.suffix != ".onnx":
        return model_path  # an OpenVINO IR (e.g. NNCF's): read as it is
    data = model_path.read_bytes()
    try:
        graph = onnx.load_from_string(data)
    except Exception:  # not a graph onnx reads: OpenVINO says why, in one line
        return model_path
    if not widen_int4_conv_weights(graph) + dequantize_small_int4_gemm_weights(graph):
        return model_path
    out = user_home() / "openvino-widened" / f"{sha256_bytes(data)}.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_file_atomic(out, graph.SerializeToString())
    return out


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


def compile_bundle_graph(model_path: Path, options: RuntimeOptions, *, profile: bool = False, widen: bool = True):
    """The compiled model of `model_path` on `options.device` (CPU by default). `widen=False` skips reading the
    graph for INT4 weights (a bundle whose manifest records none)."""
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
        model = core.read_model(str(widened_copy(Path(model_path)) if widen else model_path))
        return core.compile_model(model, device, compile_config(options, profile=profile))
    except RuntimeError as e:
        text = str(e).strip().splitlines()
        raise UserError(f"OpenVINO cannot compile {model_path} for {device}: {text[0] if text else type(e).__name__}") from None
