"""Fake quantizers for Defensive Quantization training, with straight-through gradients.

Weights: symmetric, per output channel (per tensor for Linear layers, which ONNX Runtime's
fused QGemm needs), on L = 2^(b-1) - 1 levels, except 8-bit weights, which use L = 63 (the
"reduce range" grid of the ort-cpu profile: x86 CPUs without VNNI add pairs of u8 x s8
products in int16, which 255 * 127 * 2 overflows). Scale f * max|w| / L, with the clipping
fraction f in [0.3, 1] of least squared error (f = 1 at 8 bits).
Activations: bounded ReLU, clip(x, 0, bound) rounded to 2^a - 1 levels with zero point 0, so
an a-bit activation is an 8-bit one that never exceeds 2^a - 1: INT8 kernels run it exactly.
The model input: 8-bit over the normalized image range, uint8 asymmetric or int8 symmetric
(scale and zero point as the exporter computes them). Rounding is half-to-even, as ONNX
QuantizeLinear rounds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy_robust.quant import scheme
from deploy_robust.quant.scheme import activation_params
from deploy_robust.quant.ste import ste_round


def weight_levels(bits: int) -> int:
    """A DQ layer's weight grid: quant.scheme's symmetric grid, 7-bit at 8 bits (so the trained grid runs
    exactly on AVX2's int16 pair sums too, see the ort-cpu profile)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits must be 2..8; got {bits}")
    return scheme.weight_levels(bits, reduce_range=True)


_CLIP_FRACTIONS = torch.linspace(1.0, 0.3, 15)


def weight_scale(rows: torch.Tensor, levels: int) -> torch.Tensor:
    """Per row, the scale s = f * max|w| / levels (f in [0.3, 1]) with the least squared rounding error.

    f <= 1 keeps the largest weight at +-levels after clipping, so the grid's own max gives s
    back exactly (the exporter re-derives the scale that way). At 8 bits the max is kept
    (f = 1); at 2 bits it would round most weights to 0."""
    absmax = rows.abs().amax(1).clamp_min(1e-12)
    if levels >= 63:
        return absmax / levels
    scales = _CLIP_FRACTIONS.to(rows)[:, None] * absmax[None, :] / levels  # [F, rows]
    q = torch.clamp(torch.round(rows[None] / scales[..., None]), -levels, levels)  # [F, rows, n]
    errors = ((q * scales[..., None] - rows[None]) ** 2).sum(2)
    return scales.gather(0, errors.argmin(0)[None]).squeeze(0)


def quantize_weight(weight: torch.Tensor, levels: int, per_channel: bool = True) -> torch.Tensor:
    """Symmetric fake quantization on [-levels, levels], per output channel or per tensor; the
    scale comes from the detached weights (`weight_scale`), the rounding passes gradients straight through."""
    rows = weight.detach().reshape(weight.shape[0], -1) if per_channel else weight.detach().reshape(1, -1)
    scale = weight_scale(rows, levels).reshape(-1, *[1] * (weight.dim() - 1))
    return torch.clamp(ste_round(weight / scale), -levels, levels) * scale


class _QuantLayer:
    """Shared by QuantConv2d and QuantLinear: the weight grid, and the bias on the engine's int32 grid.

    The engine adds the bias in int32 at scale s_x * s_w (s_x: the scale of the layer's quantized
    input). At 2-4 activation bits an unrounded bias would flip activation levels that the
    engine does not flip, so training rounds it the same way (straight through)."""

    bits: int
    per_channel = True

    def link_input(self, quantizer: nn.Module | None) -> None:
        # a plain attribute, not a submodule: the quantizer is already registered where it runs
        object.__setattr__(self, "input_quantizer", quantizer)

    def quantized_weight(self) -> torch.Tensor:
        return self.quantized_parameters()[0]

    def _scale(self) -> torch.Tensor:
        # The scale search is the costly part; weights change only at optimizer steps (the in-place
        # update bumps the tensor's version), not during an attack's forward passes.
        key = (self.weight._version, self.weight.data_ptr(), self.bits)
        cached = getattr(self, "_cached_scale", None)
        if cached is None or cached[0] != key:
            rows = self.weight.detach().reshape(self.weight.shape[0] if self.per_channel else 1, -1)
            cached = (key, weight_scale(rows, weight_levels(self.bits)).expand(self.weight.shape[0]))
            self._cached_scale = cached
        return cached[1]

    def quantized_parameters(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        scale = self._scale()
        shaped = scale.reshape(-1, *[1] * (self.weight.dim() - 1))
        levels = weight_levels(self.bits)
        weight = torch.clamp(ste_round(self.weight / shaped), -levels, levels) * shaped
        quantizer = getattr(self, "input_quantizer", None)
        if self.bias is None or quantizer is None:
            return weight, self.bias
        step = (quantizer.step() * scale).detach()
        return weight, ste_round(self.bias / step) * step


class QuantConv2d(_QuantLayer, nn.Conv2d):
    """A Conv2d on a `bits`-bit symmetric per-channel weight grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *self.quantized_parameters())


class QuantLinear(_QuantLayer, nn.Linear):
    """Per-tensor weights: ONNX Runtime 1.31's fused QGemm is wrong with per-channel scales (see profiles)."""

    per_channel = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, *self.quantized_parameters())


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
        return 2**self.bits - 1

    def scale(self) -> torch.Tensor:
        return self.bound / self.levels

    def step(self) -> torch.Tensor:
        return self.scale()

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

    def step(self) -> torch.Tensor:
        return self.scale

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
    levels = 2**bits - 1
    best, best_err = top, float("inf")
    for fraction in np.linspace(1.0 / candidates, 1.0, candidates):
        b = top * fraction
        s = b / levels
        err = float(((torch.round(torch.clamp(x, 0, b) / s) * s - x) ** 2).mean())
        if err < best_err:
            best, best_err = b, err
    return best
