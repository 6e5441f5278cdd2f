"""The ONNX Runtime loader: a bundle's graph -> an InferenceSession, with the optimization policy.

Kept apart from the runner (after Polygraphy's `SessionFromOnnx`): export's self-check, the
fallback's agreement trials and the runner all load graphs the same way.
"""

from __future__ import annotations

from pathlib import Path

from deploy_robust.cpu import u8s8_saturates
from deploy_robust.errors import UserError

LEVELS = ("disable", "basic", "extended", "all")


def optimization_level(
    *, quantized: bool, signed_activations: bool, device: str = "cpu", full_range_weights: bool = False
) -> str:
    """Graph optimization level for a graph on ONNX Runtime.

    A quantized graph made for TensorRT or ORT-CUDA has signed activations; ONNX Runtime's
    fused x86 integer kernels shift them to uint8 and, without VNNI, saturate int16 sums.
    On the CPU such a graph runs unfused ("basic"): exact Q/DQ semantics, which is what its
    own runtime is specified to compute, at float speed. So does an ort-cpu graph with
    full-range (127-level) int8 weights on a CPU whose u8s8 kernels saturate (deploy_robust.cpu).
    """
    if device != "cpu" or not quantized:
        return "all"
    if signed_activations or (full_range_weights and u8s8_saturates()):
        return "basic"
    return "all"


def providers_for(device: str) -> list[str]:
    import onnxruntime as ort

    if device != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserError(
            "backend ort-cuda needs ONNX Runtime's CUDA execution provider: "
            "pip install onnxruntime-gpu (and a CUDA GPU)"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def load_session(
    model: str | Path | bytes,
    *,
    providers: list[str],
    threads: int | None = None,
    optimization: str = "all",
    fast_int4: bool = True,
    profile_prefix: str | None = None,
):
    """An InferenceSession for `model` (a path or serialized bytes). `fast_int4` widens INT4 conv weights
    to INT8 first (same values; ONNX Runtime then runs its fused integer convolution). `profile_prefix`
    turns on ONNX Runtime's profiler, writing its JSON trace at that prefix (`session.end_profiling()`)."""
    import onnxruntime as ort

    if optimization not in LEVELS:
        raise ValueError(f"optimization must be one of {LEVELS}; got {optimization}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        options.intra_op_num_threads = threads
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    name = "<bytes>" if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(_model_bytes(model, fast_int4), options, providers=providers)
    except Exception as e:
        raise UserError(f"ONNX Runtime cannot load {name}: {str(e).splitlines()[0]}") from None


def _model_bytes(model: str | Path | bytes, fast_int4: bool) -> bytes:
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    if not fast_int4:
        return data
    import onnx

    from deploy_robust.kernels.int4_widen import dequantize_small_int4_gemm_weights, widen_int4_conv_weights

    graph = onnx.load_from_string(data)
    changed = widen_int4_conv_weights(graph) + dequantize_small_int4_gemm_weights(graph)
    return graph.SerializeToString() if changed else data
