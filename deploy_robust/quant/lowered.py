"""One layer of a torch model run at a lower precision, in memory: what an exported single-layer plan computes,
without exporting it (tune's per-layer sensitivities on real-size models).

`LoweredLayer` wraps a Conv2d or Linear. Its weights go on the grid the exporter writes for that precision and
target profile (per output channel, symmetric, the profile's 8-bit levels; 4-bit convolutions on 7 levels;
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
from typing import Iterator

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F

from deploy_robust.calibrators.methods import make as make_calibrator
from deploy_robust.exporters.profiles import TargetProfile
from deploy_robust.quant.plan import INT4_BLOCK, make_plan, weighted_nodes
from deploy_robust.quant.scheme import activation_params, quantize_blockwise, quantize_per_channel, weight_levels
from deploy_robust.quant.ste import ste_round

LOWERABLE = (nn.Conv2d, nn.Linear)


class LoweredLayer(nn.Module):
    """`layer` (Conv2d or Linear) at `precision` ("fp16", "int8" or "int4") under `profile`; `input_range` is the
    calibrated (low, high) of the layer's input (unused for fp16); `reads_moved_data`: the layer reads its input
    through a data-movement op the profile carries Q/DQ across (`reads_moved_data`), which decides whether a
    weight-only INT4 Linear's input is quantized."""

    def __init__(
        self,
        layer: nn.Module,
        precision: str,
        profile: TargetProfile,
        input_range: tuple[float, float] | None,
        *,
        reads_moved_data: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(layer, LOWERABLE):
            raise TypeError(f"only Conv2d and Linear layers are lowered in memory; got {type(layer).__name__}")
        self.layer, self.precision = layer, precision
        weight = layer.weight.detach()
        self.quantize_input = precision != "fp16"
        if precision == "fp16":
            lowered = weight.half().float()
        elif isinstance(layer, nn.Linear) and precision == "int4" and layer.in_features % INT4_BLOCK == 0:
            q, scale = quantize_blockwise(weight.numpy(), 4, INT4_BLOCK, axis=1)  # weight-only, blocks along K
            lowered = torch.from_numpy(q.astype(np.float32) * np.repeat(scale, INT4_BLOCK, axis=1))
            # the export leaves this layer's own input float (its Q/DQ pair has no reader once the Gemm is a
            # MatMul); only a Q/DQ carried back across a Reshape/Flatten before it quantizes what it reads
            self.quantize_input = reads_moved_data and profile.quantize_weight_only_inputs
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
        self.register_buffer("weight", lowered.to(weight.dtype))
        if self.quantize_input:
            if input_range is None:
                raise ValueError("an integer layer needs its calibrated input range")
            params = activation_params(*input_range, signed=profile.signed_activations)
            self.scale, self.zero_point = float(params.scale), float(params.zero_point)
            self.qmin, self.qmax = (-128, 127) if params.signed else (0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp16":
            x = x + (x.half().float() - x).detach()
        elif self.quantize_input:
            q = torch.clamp(ste_round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
            x = (q - self.zero_point) * self.scale
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, self.weight, layer.bias)
        return layer._conv_forward(x, self.weight, layer.bias)


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
