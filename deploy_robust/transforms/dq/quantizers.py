"""Fake quantizers for Defensive Quantization training, with straight-through gradients.

Weights: symmetric per output channel (per tensor for Linear layers, which ONNX Runtime's
fused QGemm needs), scale = max|w| / L with L = 2^(b-1) - 1 levels, except
that 8-bit weights use L = 63 (the "reduce range" grid of the ort-cpu profile: x86 CPUs
without VNNI add pairs of u8 x s8 products in int16, which 255 * 127 * 2 overflows).
Activations: bounded ReLU, clip(x, 0, bound) rounded to 2^a - 1 levels with zero point 0, so
an a-bit activation is an 8-bit one that never exceeds 2^a - 1: INT8 kernels run it exactly.
The model input: 8-bit over the normalized image range, uint8 asymmetric or int8 symmetric
(scale and zero point as the exporter computes them). Rounding is half-to-even, as ONNX QuantizeLinear rounds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy_robust.quant.scheme import activation_params


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def weight_levels(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits must be 2..8; got {bits}")
    return 63 if bits == 8 else 2 ** (bits - 1) - 1


def quantize_weight(weight: torch.Tensor, levels: int, per_channel: bool = True) -> torch.Tensor:
    """Symmetric fake quantization on [-levels, levels], per output channel or per tensor
    (scale from the detached max)."""
    rows = weight.detach().reshape(weight.shape[0], -1) if per_channel else weight.detach().reshape(1, -1)
    absmax = rows.abs().amax(1).clamp_min(1e-12)
    scale = (absmax / levels).reshape(-1, *[1] * (weight.dim() - 1))
    return torch.clamp(ste_round(weight / scale), -levels, levels) * scale


class QuantConv2d(nn.Conv2d):
    """A Conv2d whose forward uses its weight on a `bits`-bit symmetric per-channel grid."""

    bits: int

    def quantized_weight(self) -> torch.Tensor:
        return quantize_weight(self.weight, weight_levels(self.bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantLinear(nn.Linear):
    """Per-tensor weights: ONNX Runtime 1.31's fused QGemm is wrong with per-channel scales (see profiles)."""

    bits: int

    def quantized_weight(self) -> torch.Tensor:
        return quantize_weight(self.weight, weight_levels(self.bits), per_channel=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.quantized_weight(), self.bias)


def quantize_layer(layer: nn.Module, bits: int) -> nn.Module:
    """Turn a Conv2d / Linear into its quantized class in place (same parameters, same state_dict keys)."""
    layer.__class__ = QuantConv2d if isinstance(layer, nn.Conv2d) else QuantLinear
    layer.bits = bits
    return layer


class ActivationQuantizer(nn.Module):
    """ReLU bounded at `bound`, on 2^bits - 1 levels: replaces a ReLU. `bound` is a calibrated buffer."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"activation bits must be 2..8; got {bits}")
        self.bits = bits
        self.register_buffer("bound", torch.tensor(1.0))

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1

    def scale(self) -> torch.Tensor:
        return self.bound / self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "deploy", False):  # export form: the exporter writes the rounding as Q/DQ
            return torch.minimum(torch.relu(x), self.bound)
        s = self.scale()
        # clamp passes no gradient outside [0, bound]; the rounding passes it straight through
        return ste_round(torch.clamp(x, 0.0, float(self.bound)) / s) * s

    def extra_repr(self) -> str:
        return f"bits={self.bits}, bound={float(self.bound):.4g}"


class InputQuantizer(nn.Module):
    """8-bit fake quantization of the (normalized) model input over a fixed range: uint8 asymmetric
    (ONNX Runtime CPU's fastest form) or int8 symmetric with zero point 0 (what every target takes)."""

    def __init__(self, low: float, high: float, signed: bool = False) -> None:
        super().__init__()
        p = activation_params(low, high, signed=signed)
        self.low, self.high, self.signed = float(low), float(high), signed
        self.q_min, self.q_max = (-128, 127) if signed else (0, 255)
        self.register_buffer("scale", torch.tensor(float(p.scale)))
        self.register_buffer("zero_point", torch.tensor(float(p.zero_point)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "deploy", False):
            return x
        q = torch.clamp(ste_round(x / self.scale) + self.zero_point, self.q_min, self.q_max)
        return (q - self.zero_point) * self.scale


def mse_bound(samples: torch.Tensor, bits: int, candidates: int = 64) -> float:
    """The clipping bound b minimizing E[(q_b(relu(x)) - relu(x))^2] over a grid of fractions of max."""
    x = torch.relu(samples.detach().flatten().double())
    top = float(x.max())
    if top <= 0:
        return 1.0
    levels = 2 ** bits - 1
    best, best_err = top, float("inf")
    for fraction in np.linspace(1.0 / candidates, 1.0, candidates):
        b = top * fraction
        s = b / levels
        err = float(((torch.round(torch.clamp(x, 0, b) / s) * s - x) ** 2).mean())
        if err < best_err:
            best, best_err = b, err
    return best
