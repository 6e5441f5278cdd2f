"""The OpenVINO loader: a bundle's ONNX graph -> a compiled model, with its configuration and cache.

OpenVINO reads the ONNX file itself (Q/DQ pairs become its FakeQuantize, then integer kernels).
The compiled-model cache lives in this user's checked deploy-robust folder (never in a bundle someone
else wrote), one folder per graph, device and configuration, its blobs checked against a signed index
before OpenVINO reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from deploy_robust.errors import UserError
from deploy_robust.hashing import sha256_bytes
from deploy_robust.private_files import SealedFolder, user_folder
from deploy_robust.kernels.int4_widen import dequantize_small_int4_gemm_weights, widen_int4_conv_weights
from deploy_robust.runtimes.base import PRECISION_HINTS, RuntimeOptions


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("backend openvino needs OpenVINO: pip install openvino") from None
    return openvino


def bundle_graph(model_path: Path, widen: bool = True) -> str | bytes:
    """What OpenVINO reads for `model_path`: the path of an OpenVINO IR (e.g. NNCF's), else the ONNX graph's
    bytes, with INT4 conv weights widened to INT8 in memory where it has them (the same integers and scales, so
    the same numbers): OpenVINO then runs its INT8 kernels instead of dequantizing INT4 (kernels/int4_widen.py;
    measured about 0.4x INT8 speed without). Nothing is written to disk, so no copy can be swapped later.
    `widen=False` skips reading the graph for INT4 weights (a bundle whose manifest records none)."""
    if model_path.suffix != ".onnx":
        return str(model_path)
    data = model_path.read_bytes()
    if not widen:
        return data
    try:
        graph = onnx.load_from_string(data)
    except Exception:  # not a graph onnx reads: OpenVINO says why, in one line
        return data
    if not widen_int4_conv_weights(graph) + dequantize_small_int4_gemm_weights(graph):
        return data
    return graph.SerializeToString()


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
    device = options.device or "CPU"
    config = compile_config(options, profile=profile)
    graph = bundle_graph(Path(model_path), widen)
    cache = _graph_cache(graph, device, config) if options.cache else None
    if cache is not None:
        core.set_property({"CACHE_DIR": str(cache.path)})
    try:
        compiled = core.compile_model(core.read_model(graph), device, config)
    except RuntimeError as e:
        text = str(e).strip().splitlines()
        raise UserError(
            f"OpenVINO cannot compile {model_path} for {device}: {text[0] if text else type(e).__name__}"
        ) from None
    if cache is not None:
        cache.seal()
    return compiled


def _graph_cache(graph: str | bytes, device: str, config: dict[str, Any]) -> SealedFolder | None:
    """OpenVINO's compiled-model cache for this graph alone: a folder of the user's named by the graph's content,
    device and configuration, whose files are checked against this user's signed index before OpenVINO reads
    them, so a blob compiled from another graph (or planted) is deleted, never run. None: no cache (the folder
    cannot be written; compile every time)."""
    content = graph.encode() if isinstance(graph, str) else graph
    name = sha256_bytes(content + json.dumps([device, config], sort_keys=True, default=str).encode())[:32]
    try:
        cache = SealedFolder(user_folder("openvino-cache") / name, "openvino-cache")
        cache.admit()
    except OSError:
        return None
    return cache
