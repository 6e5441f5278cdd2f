"""Quantization arithmetic shared by the exporter (which writes it) and the twin (which mirrors it).

Activations: per-tensor, uint8 asymmetric (ONNX Runtime CPU) or int8 symmetric with zero point 0
(TensorRT). Weights: per-output-channel symmetric on [-(2^(b-1)-1), 2^(b-1)-1] (8 or 4 bits), or
block-wise symmetric for INT4 weight-only Gemm/MatMul. Biases: int32 at scale s_x * s_w.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_TINY = np.float32(1e-12)


@dataclass(frozen=True)
class ActivationParams:
    scale: np.float32
    zero_point: int
    signed: bool

    @property
    def dtype(self) -> type:
        return np.int8 if self.signed else np.uint8


@dataclass(frozen=True)
class TrainedGrid:
    """The grids a model trained with (Defensive Quantization models, EMPIR members): exported as they are,
    never recalibrated (`exporters.trained_grid`)."""

    weight_bits: dict[str, int]  # torch layer name -> bits of its weight grid (quantized layers only)
    weight_levels: dict[str, int]  # torch layer name -> largest |q|
    input_bits: dict[str, int]  # quantized layer -> bits of the bounded activation it reads
    input_params: ActivationParams | None  # the 8-bit model-input quantizer, if the model has one
    weight_scales: dict[str, float] = field(default_factory=dict)  # explicit per-tensor scales (else max|w| / L)


def activation_params(low: float, high: float, signed: bool) -> ActivationParams:
    """Scale and zero point covering [low, high] (widened to include 0, so 0 is exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if signed:
        scale = max(abs(low), abs(high)) / 127.0
        return ActivationParams(np.float32(max(scale, _TINY)), 0, True)
    scale = np.float32(max((high - low) / 255.0, _TINY))
    zero_point = int(np.clip(np.round(-low / scale), 0, 255))
    return ActivationParams(scale, zero_point, False)


def weight_levels(bits: int, *, reduce_range: bool = False) -> int:
    """Largest magnitude on a symmetric signed grid of `bits` bits: 127 for 8, 7 for 4. `reduce_range`
    keeps 8-bit weights on 63 levels (7 bits): x86 CPUs without VNNI add pairs of u8 x s8 products in
    int16, and 2 * 255 * 63 fits where 2 * 255 * 127 saturates."""
    return 63 if reduce_range and bits == 8 else 2 ** (bits - 1) - 1


# Largest |bias| in int32 units: leaves headroom so bias + accumulator cannot wrap around.
BIAS_LIMIT = 2**30


def quantize_per_channel(
    weight: np.ndarray, bits: int, axis: int = 0, levels: int | None = None, min_scale: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel quantization: integer values (int8 storage) and float32 scales.

    `levels` narrows the grid below the bit width (63 for 8-bit "reduce range"); `min_scale`
    floors the scales (see `bias_safe_min_scale`)."""
    levels = levels or weight_levels(bits)
    moved = np.moveaxis(weight.astype(np.float32), axis, 0)
    absmax = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scale = np.maximum(np.maximum(absmax / levels, min_scale), _TINY).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.round(weight / scale.reshape(shape)), -levels, levels).astype(np.int8)
    return q, scale


def quantize_blockwise(weight: np.ndarray, bits: int, block: int, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric block quantization along `axis` (blocks of `block` elements; the axis length must divide)."""
    levels = weight_levels(bits)
    w = np.moveaxis(weight.astype(np.float32), axis, 0)
    k = w.shape[0]
    blocks = w.reshape(k // block, block, *w.shape[1:])
    absmax = np.abs(blocks).max(axis=1)
    scale = np.maximum(absmax / levels, _TINY).astype(np.float32)
    q = np.clip(np.round(blocks / scale[:, None]), -levels, levels).astype(np.int8).reshape(w.shape)
    return np.moveaxis(q, 0, axis), np.moveaxis(scale, 0, axis)


def bias_safe_min_scale(bias: np.ndarray, input_scale: np.float32) -> np.ndarray:
    """Smallest weight scale per channel for which the int32 bias (at s_x * s_w) stays within BIAS_LIMIT.

    A nearly dead filter (|w| ~ 1e-6) with a normal bias would otherwise need a bias of
    ~1e10 in int32 units: it saturates, and fused integer kernels wrap their accumulator."""
    return (np.abs(bias.astype(np.float64)) / (float(input_scale) * BIAS_LIMIT)).astype(np.float32)


def quantize_bias(bias: np.ndarray, input_scale: np.float32, weight_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.float32(input_scale) * weight_scale.astype(np.float32)).astype(np.float32)
    q = np.clip(np.round(bias.astype(np.float64) / scale), -(2**31), 2**31 - 1).astype(np.int32)
    return q, scale
