"""The differentiable twin: a bundle's own Q/DQ graph run in torch, with straight-through rounding.

`twin_module(model.onnx)` interprets the bundle's own graph (not the original model) with
`OnnxGraphModule` and the op table `TWIN_OPS`: the float ops plus QuantizeLinear /
DequantizeLinear handlers that compute
exactly what the engine computes in the forward pass: round half to even, saturate to the
integer range, scale back. In the backward pass the rounding is the identity (straight-
through estimator) and saturation is clipped (zero gradient outside the range), so
white-box attacks see the deployed quantization grid rather than a float model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from deploy_robust.onnx_torch import OPS, OnnxGraphModule
from deploy_robust.quant.ste import ste_round

_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (-(2**31), 2**31 - 1)}


def _int_range(zero_point) -> tuple[int, int]:
    if zero_point is None:
        return (0, 255)  # ONNX default zero point is uint8
    dtype = np.asarray(zero_point).dtype
    if dtype.name == "int4":
        return (-8, 7)
    if dtype.name == "uint4":
        return (0, 15)
    return _RANGES.get(np.dtype(dtype), (-128, 127))


def _broadcast(param, x_dim: int, axis: int, block_size: int, length: int | None) -> torch.Tensor:
    """Per-tensor, per-axis or blocked scale/zero point shaped to broadcast against the input."""
    t = param if isinstance(param, torch.Tensor) else torch.as_tensor(np.asarray(param).astype(np.float32))
    t = t.float()
    if t.dim() == 0:
        return t
    axis = axis % x_dim
    if block_size:
        t = torch.repeat_interleave(t, block_size, dim=axis)
        if length is not None:
            t = t.narrow(axis, 0, length)
        return t
    shape = [1] * x_dim
    shape[axis] = -1
    return t.reshape(shape)


def _quantize(args, attrs):
    x, scale = args[0], args[1]
    zero_point = args[2] if len(args) > 2 else None
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    s = _broadcast(scale, x.dim(), axis, block, x.shape[axis % x.dim()] if x.dim() else None)
    z = 0.0 if zero_point is None else _broadcast(zero_point, x.dim(), axis, block, None)
    lo, hi = _int_range(zero_point)
    return torch.clamp(ste_round(x.float() / s) + z, lo, hi)


def _dequantize(args, attrs):
    q, scale = args[0], args[1]
    zero_point = args[2] if len(args) > 2 else None
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    if not isinstance(q, torch.Tensor):  # a stored integer weight
        q = torch.as_tensor(np.asarray(q).astype(np.float32))
    q = q.float()
    s = _broadcast(scale, q.dim(), axis, block, q.shape[axis % q.dim()] if q.dim() else None)
    z = 0.0 if zero_point is None else _broadcast(zero_point, q.dim(), axis, block, None)
    return (q - z) * s


# The interpreter's op table for graphs that quantize: the float ops plus the Q/DQ pair above.
TWIN_OPS = {**OPS, "QuantizeLinear": _quantize, "DequantizeLinear": _dequantize}


def twin_module(
    model: onnx.ModelProto | str | Path,
    *,
    float_dtype: torch.dtype | None = None,
    bpda: bool = False,
    all_outputs: bool = False,
) -> OnnxGraphModule:
    """A graph (a bundle's `model.onnx`, or any ONNX model) as a torch module in eval mode.

    `float_dtype=None` computes in the precisions the graph states (fp16 casts included);
    `bpda` passes other rounding-type ops (Round, Sign, ...) straight through for attacks;
    `all_outputs` returns every graph output, not only the first (the logits)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return OnnxGraphModule(
        model, float_dtype=float_dtype, straight_through=bpda, all_outputs=all_outputs, ops=TWIN_OPS
    ).eval()


def attack_graph(model: onnx.ModelProto | str | Path, bpda: bool = True) -> OnnxGraphModule:
    """The graph white-box attacks run on (verify's S, the detector-aware attack): float32 throughout (fp16
    casts passed through: their gradients underflow), rounding straight-through with `bpda`, every output."""
    return twin_module(model, float_dtype=torch.float32, bpda=bpda, all_outputs=True)
