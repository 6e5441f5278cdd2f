"""Models that are already quantized: freeze their fake-quantizers so the export keeps the trained grid.

A torch.ao `FakeQuantize` module (or anything with `scale`, `zero_point`, `quant_min`,
`quant_max` and `qscheme`/`ch_axis`, like this project's own DQ quantizers) still
updates its observer in eval mode, which neither ONNX exporter can capture. `freeze`
replaces each one with `FrozenFakeQuant`, a stateless
`torch.fake_quantize_per_{tensor,channel}_affine` at the trained scale and zero point,
which the exporter writes as a QuantizeLinear/DequantizeLinear pair: the bundle then runs
exactly the grid the model was trained on, with no recalibration.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class FrozenFakeQuant(nn.Module):
    def __init__(
        self, scale: torch.Tensor, zero_point: torch.Tensor, quant_min: int, quant_max: int, axis: int | None
    ) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().float().clone())
        self.register_buffer("zero_point", zero_point.detach().to(torch.int32).clone())
        self.quant_min, self.quant_max, self.axis = int(quant_min), int(quant_max), axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:  # tensor-valued scale and zero point: no data-dependent Python numbers
            return torch.fake_quantize_per_tensor_affine(
                x, self.scale.reshape(()), self.zero_point.reshape(()), self.quant_min, self.quant_max
            )
        return torch.fake_quantize_per_channel_affine(
            x, self.scale, self.zero_point, self.axis, self.quant_min, self.quant_max
        )


def is_fake_quant(module: nn.Module) -> bool:
    return (
        all(hasattr(module, a) for a in ("scale", "zero_point", "quant_min", "quant_max"))
        and isinstance(getattr(module, "scale"), torch.Tensor)
        and not isinstance(module, FrozenFakeQuant)
    )


def freeze(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` with every fake-quantizer frozen; returns it and how many were frozen."""
    if not any(is_fake_quant(m) for m in model.modules()):
        return model, 0
    model = copy.deepcopy(model)
    count = 0
    for name, module in list(model.named_modules()):
        if not is_fake_quant(module):
            continue
        per_channel = module.scale.numel() > 1 or "channel" in str(getattr(module, "qscheme", ""))
        axis = int(getattr(module, "ch_axis", 0)) if per_channel else None
        frozen = FrozenFakeQuant(module.scale, module.zero_point, module.quant_min, module.quant_max, axis)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, frozen)
        count += 1
    return model.eval(), count
