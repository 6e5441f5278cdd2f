"""One layer of a torch model run at a lower precision, in memory: what an exported single-layer plan computes,
without exporting it (tune's per-layer sensitivities on real-size models).

`LoweredLayer` wraps a Conv2d or Linear. Where a uniform bundle lowers the layer, `shipped_layers` reads its weights
and input quantizer back from that bundle (GPTQ rounding included). Elsewhere `rounded_layer` puts its weights on
the grid the exporter writes for that precision and target profile (per output channel, symmetric, the profile's 8-bit levels; 4-bit convolutions on 7 levels;
ort-cpu Gemm weights per tensor; INT4 Gemm weights weight-only in blocks of 32 along K), rounded to nearest: the
export refines them with GPTQ, so a lowered layer here errs a little more than the shipped one, which is what a
ranking of layers needs (`benchmarks/tune_sensitivity.py` checks the ranking against exported bundles). Its input
(except a weight-only INT4 Linear's) is fake-quantized per tensor at the range the export's calibrator picks on the same images (`input_ranges`), with
straight-through rounding, so PGD sees through it as it sees through the twin of a bundle. fp16 rounds the
weights and the input to half precision.

Per output channel, rounding a convolution's weights before or after folding the BatchNorm that follows it gives
the same grid (a per-channel factor scales the weights and their scale alike), so the unfolded torch layer is
quantized as the folded graph is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

from deploy_robust.calibrators.methods import make as make_calibrator
from deploy_robust.exporters.profiles import DATA_MOVEMENT, TargetProfile
from deploy_robust.onnx_ops import QUANTIZABLE_OPS
from deploy_robust.quant.plan import INT4_BLOCK, make_plan, weighted_nodes
from deploy_robust.quant.scheme import (
    ActivationParams,
    activation_params,
    quantize_blockwise,
    quantize_per_channel,
    weight_levels,
)
from deploy_robust.quant.ste import ste_round

LOWERABLE = (nn.Conv2d, nn.Linear)


class LoweredLayer(nn.Module):
    """`layer` (Conv2d or Linear) computing with `weight` (its lowered weights, in the layer's layout and scale)
    on its input quantized by `input_params` (None: float input; `fp16`: the input rounded to half)."""

    def __init__(
        self, layer: nn.Module, weight: torch.Tensor, input_params: ActivationParams | None, fp16: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(layer, LOWERABLE):
            raise TypeError(f"only Conv2d and Linear layers are lowered in memory; got {type(layer).__name__}")
        self.layer, self.fp16 = layer, fp16
        self.register_buffer("weight", weight.to(layer.weight.dtype))
        self.quantize_input = input_params is not None
        if input_params is not None:
            self.scale, self.zero_point = float(input_params.scale), float(input_params.zero_point)
            self.qmin, self.qmax = (-128, 127) if input_params.signed else (0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp16:
            x = x + (x.half().float() - x).detach()
        elif self.quantize_input:
            q = torch.clamp(ste_round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
            x = (q - self.zero_point) * self.scale
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, self.weight, layer.bias)
        return layer._conv_forward(x, self.weight, layer.bias)


def rounded_layer(
    layer: nn.Module,
    precision: str,
    profile: TargetProfile,
    input_range: tuple[float, float] | None,
    *,
    reads_moved_data: bool = False,
) -> LoweredLayer:
    """`layer` at `precision` ("fp16", "int8" or "int4") under `profile`, its weights rounded to nearest on the
    export's grid; `input_range`: the calibrated (low, high) of its input (unused for fp16); `reads_moved_data`:
    it reads its input through a data-movement op the profile carries Q/DQ across, which decides whether a
    weight-only INT4 Linear's input is quantized."""
    weight = layer.weight.detach()  # a layer that is not a Conv2d or Linear is refused by LoweredLayer
    quantize_input = True
    if precision == "fp16":
        return LoweredLayer(layer, weight.half().float(), None, fp16=True)
    if isinstance(layer, nn.Linear) and precision == "int4" and layer.in_features % INT4_BLOCK == 0:
        q, scale = quantize_blockwise(weight.numpy(), 4, INT4_BLOCK, axis=1)  # weight-only, blocks along K
        lowered = torch.from_numpy(q.astype(np.float32) * np.repeat(scale, INT4_BLOCK, axis=1))
        # the export leaves this layer's own input float (its Q/DQ pair has no reader once the Gemm is a
        # MatMul); only a Q/DQ carried back across a Reshape/Flatten before it quantizes what it reads
        quantize_input = reads_moved_data and profile.quantize_weight_only_inputs
    else:
        # 4-bit convolutions; a Linear whose K does not divide in blocks of 32 is exported INT8
        bits = 4 if precision == "int4" and isinstance(layer, nn.Conv2d) else 8
        levels = profile.int8_weight_levels if bits == 8 else weight_levels(4)
        if isinstance(layer, nn.Linear) and not profile.per_channel_gemm:
            absmax = max(float(weight.abs().max()), 1e-12)
            lowered = torch.clamp(torch.round(weight / (absmax / levels)), -levels, levels) * (absmax / levels)
        else:
            q, scale = quantize_per_channel(weight.numpy(), bits, axis=0, levels=levels)
            lowered = torch.from_numpy(q.astype(np.float32) * scale.reshape([-1] + [1] * (weight.dim() - 1)))
    if not quantize_input:
        return LoweredLayer(layer, lowered, None)
    if input_range is None:
        raise ValueError("an integer layer needs its calibrated input range")
    return LoweredLayer(layer, lowered, activation_params(*input_range, signed=profile.signed_activations))


@dataclass(frozen=True)
class ShippedLayer:
    """One layer as a quantized graph ships it: its dequantized weights in the torch layer's layout ([out, in,
    ...]) and the scale the graph computes them at (a BatchNorm folded in), the FP32 graph's float weights at
    that same scale, and the quantizer of its input (None where it reads float)."""

    weight: np.ndarray
    float_weight: np.ndarray
    input: ActivationParams | None

    def lowered(self, layer: nn.Module) -> LoweredLayer:
        """`layer` computing with these weights, brought back to the torch layer's own scale: per output channel,
        the least-squares factor between the FP32 graph's weights and the layer's (1 where nothing was folded)."""
        torch_weight = layer.weight.detach().numpy().astype(np.float64)
        rows, graph_rows = torch_weight.reshape(len(torch_weight), -1), self.float_weight.reshape(len(torch_weight), -1)
        energy = (rows * rows).sum(axis=1)
        factor = np.where(energy > 0, (graph_rows * rows).sum(axis=1) / np.maximum(energy, 1e-300), 1.0)
        factor = np.where(np.abs(factor) > 1e-12, factor, 1.0).reshape([-1] + [1] * (torch_weight.ndim - 1))
        return LoweredLayer(layer, torch.from_numpy((self.weight / factor).astype(np.float32)), self.input)


def shipped_layers(lowered_graph: onnx.ModelProto, fp32_graph: onnx.ModelProto) -> dict[str, ShippedLayer]:
    """Per layer (as plans name it) that `lowered_graph` (a uniform INT8 or INT4 bundle's) quantizes: its weights
    and input quantizer, read from the graph's own DequantizeLinear nodes. A layer the graph keeps in float (the
    narrow first convolution on ort-cpu) is not in it."""
    inits = {i.name: numpy_helper.to_array(i) for i in lowered_graph.graph.initializer}
    producer = {out: node for node in lowered_graph.graph.node for out in node.output}
    float_inits = {i.name: i for i in fp32_graph.graph.initializer}
    by_weight = {}  # quantized weight initializer -> (layer name, FP32 weight in the torch layout)
    for plan, (node, weight) in zip(make_plan(fp32_graph, "fp32", "ort-cpu"), weighted_nodes(fp32_graph)):
        float_weight = numpy_helper.to_array(float_inits[weight.name])
        by_weight[weight.name] = (plan.name, _torch_layout(node, float_weight))
    found = {}
    for node in lowered_graph.graph.node:
        dq = producer.get(node.input[1]) if node.op_type in QUANTIZABLE_OPS and len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        source = next((w for w in by_weight if dq.input[0].startswith(w + "_")), None)
        if source is None:
            continue
        name, float_weight = by_weight[source]
        weight = _torch_layout(node, _dequantized(dq, inits))
        found[name] = ShippedLayer(weight, float_weight, _input_quantizer(node, producer, inits))
    return found


def _dequantized(dq: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """A DequantizeLinear of constants, computed: per tensor, per axis, or in blocks along the axis."""
    q = inits[dq.input[0]].astype(np.float32)
    scale = inits[dq.input[1]].astype(np.float32)
    zero = inits[dq.input[2]].astype(np.float32) if len(dq.input) > 2 and dq.input[2] else np.float32(0)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in dq.attribute}
    axis, block = attrs.get("axis", 1) % q.ndim, attrs.get("block_size", 0)
    if scale.ndim == 0:
        return (q - zero) * scale
    if block:
        scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(range(q.shape[axis]), axis=axis) if np.ndim(zero) else zero
        return (q - zero) * scale
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q - np.reshape(zero, shape if np.ndim(zero) else ())) * scale.reshape(shape)


def _torch_layout(node: onnx.NodeProto, weight: np.ndarray) -> np.ndarray:
    """A graph weight in the torch layer's layout: Conv as it is, Gemm [out, in] unless transB is 0, MatMul
    [in, out] transposed."""
    if node.op_type == "MatMul":
        return weight.T
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return weight if trans_b else weight.T
    return weight


def _input_quantizer(
    node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], inits: dict[str, np.ndarray]
) -> ActivationParams | None:
    """The quantizer of what `node` reads: a DequantizeLinear before it, or one before a data-movement op that
    Q/DQ was carried back across; None where it reads float."""
    source = producer.get(node.input[0])
    while source is not None and source.op_type in DATA_MOVEMENT:
        source = producer.get(source.input[0])
    if source is None or source.op_type != "DequantizeLinear":
        return None
    zero = inits[source.input[2]] if len(source.input) > 2 and source.input[2] else np.uint8(0)
    return ActivationParams(np.float32(inits[source.input[1]]), int(zero), np.asarray(zero).dtype == np.int8)


def input_ranges(
    model: nn.Module,
    layers: dict[str, nn.Module],
    images: torch.Tensor,
    method: str,
    signed: bool,
    *,
    batch_size: int = 64,
    percentile: float = 99.99,
) -> dict[str, tuple[float, float]]:
    """Per named layer, the (low, high) of its input that the export's calibrator `method` picks when `model`
    (whose submodules `layers` are) runs on `images`."""
    calibrators = {name: make_calibrator(method, percentile=percentile, signed=signed) for name in layers}
    hooks = [
        module.register_forward_pre_hook(lambda _, args, name=name: calibrators[name].update(args[0].numpy()))
        for name, module in layers.items()
    ]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: c.range() for name, c in calibrators.items()}


def reads_moved_data(graph: onnx.ModelProto, profile: TargetProfile) -> dict[str, bool]:
    """Per layer (as plans name it) of an FP32 graph: whether its input comes straight from an op that `profile`
    carries Q/DQ back across (a Flatten or Reshape before a Linear)."""
    producers = {out: node.op_type for node in graph.graph.node for out in node.output}
    return {
        plan.name: producers.get(node.input[0]) in profile.carry_through
        for plan, (node, _) in zip(make_plan(graph, "fp32", profile.name), weighted_nodes(graph))
    }


@contextlib.contextmanager
def swapped(model: nn.Module, name: str, replacement: nn.Module) -> Iterator[nn.Module]:
    """`model` with its submodule `name` replaced by `replacement` inside the block, restored after it."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, child)
    setattr(parent, child, replacement)
    try:
        yield model
    finally:
        setattr(parent, child, original)
