"""Target profiles: what each runtime runs fastest and correctly, as Q/DQ placement rules.

ort-cpu   uint8 asymmetric activations, int8 symmetric per-channel weights (U8S8: what ONNX
          Runtime's x86 integer kernels want). Every activation input of Conv/Gemm/MatMul/Add/
          pools is quantized, after the ReLU (zero point 0, so ORT folds the ReLU away), and
          Q/DQ is carried through Reshape/Flatten/Gather (sharing the scale of the tensor they
          read) so the producing Conv ends in a Q and fuses into QLinearConv, and the data
          movement runs on uint8. INT4 conv weights are stored as INT4 and widened at load.
          Gemm/MatMul weights are quantized per tensor: ONNX Runtime 1.31's fused QGemm
          computes wrong results with per-channel weight scales (measured: 0.7 max error on a
          one-layer graph, exact per tensor; pinned by a test). Conv weights stay per channel.
          8-bit weights use 7 bits of range ([-63, 63], "reduce range"): on x86 CPUs without
          VNNI, ONNX Runtime's U8S8 kernels add pairs of u8*s8 products in int16, and
          2*255*127 overflows it (measured here, AVX2 EPYC: logits off by up to 44);
          2*255*63 = 32130 fits, so the bundle is correct on every x86 CPU.
          INT4 weight-only Gemm/MatMul inputs are quantized too (8-bit activations), so the
          layer before them ends in a Q and fuses; ORT runs the Gemm itself as MatMulNBits.
ort-cuda  as ort-cpu with int8 symmetric activations (zero point 0).
tensorrt  int8 symmetric everything (zero point 0), per-channel weights; Q/DQ only on the
          inputs of weighted ops, plus exactly one input (the skip branch) of each residual
          Add; nothing around Softmax/Reshape/Concat/Gather (a tensor quantized for a Conv
          still reaches a GDWS channel Gather in float). INT4 conv weights are emitted as INT8
          tensors holding the 4-bit grid (TensorRT has no INT4 convolution); opset 17, or 21
          only where INT4 Gemm/MatMul weights are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deploy_robust.onnx_ops import QUANTIZABLE_OPS


@dataclass(frozen=True)
class TargetProfile:
    name: str
    signed_activations: bool
    quantized_consumers: tuple[str, ...]  # ops whose activation inputs get Q/DQ
    residual_add: str  # "all": every Add input; "skip": one input per Add; "none"
    carry_through: tuple[str, ...]  # data-movement ops that Q/DQ is carried across (shared scale)
    int4_conv_storage: str  # "int4" or "int8" (4-bit grid in int8 tensors)
    per_channel_gemm: bool  # per-output-channel Gemm/MatMul weights (else per tensor)
    int8_weight_levels: int  # largest |q| of 8-bit weights: 127, or 63 ("reduce range")
    quantize_weight_only_inputs: bool  # 8-bit activations into INT4 weight-only Gemm/MatMul too
    dequantized_consumers: tuple[str, ...] | None = None  # ops that read a DQ output (None: every op);
    # the others keep reading the float tensor
    integer_clip: bool = True  # a trained k-bit activation bound as an integer Clip between Q
    # and DQ (ONNX Runtime); else a float Min before the Q (TensorRT)


# Ops that only move values: Q/DQ is carried back across them with the input's scale and zero
# point, so ONNX Runtime runs them on 8-bit data (a GDWS channel Gather included).
DATA_MOVEMENT = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Gather")

PROFILES = {
    "ort-cpu": TargetProfile(
        "ort-cpu",
        False,
        QUANTIZABLE_OPS + ("MaxPool", "AveragePool", "GlobalAveragePool"),
        "all",
        DATA_MOVEMENT,
        "int4",
        False,
        63,
        True,
    ),
    "ort-cuda": TargetProfile(
        "ort-cuda",
        True,
        QUANTIZABLE_OPS + ("MaxPool", "AveragePool", "GlobalAveragePool"),
        "all",
        DATA_MOVEMENT,
        "int4",
        False,
        127,
        True,
    ),
    "tensorrt": TargetProfile(
        "tensorrt",
        True,
        QUANTIZABLE_OPS,
        "skip",
        (),
        "int8",
        True,
        127,
        False,
        QUANTIZABLE_OPS + ("Add",),
        integer_clip=False,
    ),
}


INT8_WEIGHT_RANGES = ("auto", "full", "reduced")


def get_profile(name: str, int8_weights: str = "reduced") -> TargetProfile:
    """The profile called `name` (a Target's `profile`: deploy_robust.targets checks `--target`); for ort-cpu,
    `int8_weights` "full" keeps 8-bit weights on [-127, 127] (CPUs with VNNI or AMX, and non-x86 CPUs), "reduced"
    on [-63, 63] (every x86 CPU); export_bundle checks the flag and resolves "auto". Other targets use 127."""
    profile = PROFILES[name]
    return replace(profile, int8_weight_levels=127) if int8_weights == "full" else profile
