"""Precision plans: the precision of every weighted layer, and the reason for it.

Layers are the ONNX graph's weighted nodes (Conv, Gemm, MatMul with a constant weight),
named as in the torch model (`layer1.0.conv1`), read from their weight initializer's name.
A `mixed` plan comes from a YAML/JSON file:

    default: int8           # precision of layers the file does not name
    layers:
      conv1: fp32           # exact names, or glob patterns
      "layer4.*": int4
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from deploy_robust.errors import UserError, first_line
from deploy_robust.onnx_ops import MATRIX_OPS, QUANTIZABLE_OPS

LAYER_PRECISIONS = ("fp32", "fp16", "int8", "int4")
MODES = ("fp32", "fp16", "int8", "int4", "mixed")
INT4_BLOCK = 32


@dataclass
class LayerPlan:
    name: str  # torch-style layer name
    node: str  # ONNX node name
    op: str
    precision: str  # final precision
    requested: str
    reason: str

    @property
    def weight_only_int4(self) -> bool:
        """INT4 blocks on a Gemm/MatMul weight, activations left float (not a per-channel integer grid)."""
        return self.precision == "int4" and self.op in MATRIX_OPS

    @property
    def integer_weights(self) -> bool:
        """Weights on a per-channel integer grid with quantized inputs (INT8, or INT4 convolutions)."""
        return self.precision in ("int8", "int4") and not self.weight_only_int4

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "node": self.node,
            "op": self.op,
            "precision": self.precision,
            "requested": self.requested,
            "reason": self.reason,
        }


def layer_name(weight_name: str) -> str:
    name = weight_name
    for prefix in ("model.",):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name[: -len(".weight")] if name.endswith(".weight") else name


def weighted_nodes(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.TensorProto]]:
    """(node, weight initializer) for each Conv/Gemm/MatMul whose weight is a constant."""
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in QUANTIZABLE_OPS and len(node.input) > 1 and node.input[1] in inits:
            found.append((node, inits[node.input[1]]))
    return found


def read_plan_file(path: str | Path) -> tuple[str, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plan file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as e:
        raise UserError(
            f"{path.name}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {first_line(e)}"
        ) from None
    if not isinstance(doc, dict):
        raise UserError(f"{path.name}: a plan is a mapping with 'default' and 'layers'")
    layers = doc.get("layers", {k: v for k, v in doc.items() if k != "default"})
    default = doc.get("default", "fp32")
    if not isinstance(layers, dict):
        raise UserError(f"{path.name}: 'layers' must map layer names to precisions; got a {type(layers).__name__}")
    for value in [default, *layers.values()]:
        if not isinstance(value, str) or value not in LAYER_PRECISIONS:
            raise UserError(f"{path.name}: precision {value!r} is not one of {', '.join(LAYER_PRECISIONS)}")
    return default, {str(k): str(v) for k, v in layers.items()}


def make_plan(model: onnx.ModelProto, mode: str, target: str, plan_file: str | Path | None = None) -> list[LayerPlan]:
    """Decide each layer's precision for `mode` on `target`, with fallbacks where a kernel is missing."""
    if mode not in MODES:
        raise UserError(f"--precision must be one of {', '.join(MODES)}; got {mode}")
    default, overrides = mode, {}
    if mode == "mixed":
        if plan_file is None:
            raise UserError("--precision mixed needs --plan plan.yaml")
        default, overrides = read_plan_file(plan_file)
    elif plan_file is not None:
        raise UserError("--plan goes with --precision mixed")
    plans = []
    names = []
    for index, (node, weight) in enumerate(weighted_nodes(model)):
        name = layer_name(weight.name) if not weight.name.startswith("onnx::") else node.name
        names.append(name)
        requested = _lookup(name, overrides, default)
        precision, reason = _decide(node, weight, requested, target)
        named = name in overrides or any(fnmatch.fnmatchcase(name, k) for k in overrides)
        if index == 0 and not named and precision in ("int8", "int4") and _narrow_image_conv(node, weight, target):
            c_out, c_in = list(weight.dims)[:2]
            precision, reason = (
                "fp32",
                (
                    f"narrow image-input conv ({c_in} -> {c_out} channels): ONNX Runtime's integer convolution is slower "
                    "than its float one there (measured on the six real checkpoints: benchmarks/runtime_matrix.py); "
                    "name it in a --plan to quantize it anyway"
                ),
            )
        plans.append(LayerPlan(name, node.name, node.op_type, precision, requested, reason))
    unknown = [k for k in overrides if not any(fnmatch.fnmatchcase(n, k) for n in names)]
    if unknown:
        raise UserError(
            f"plan names layers the model does not have: {', '.join(unknown)} "
            f"(layers: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''})"
        )
    return plans


def _lookup(name: str, overrides: dict[str, str], default: str) -> str:
    if name in overrides:
        return overrides[name]
    for pattern, precision in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            return precision
    return default


def _decide(node: onnx.NodeProto, weight: onnx.TensorProto, requested: str, target: str) -> tuple[str, str]:
    if requested in ("fp32", "fp16"):
        return requested, "requested"
    if weight.data_type != onnx.TensorProto.FLOAT:
        return "fp32", f"weight stored as {onnx.TensorProto.DataType.Name(weight.data_type)}, not float32"
    dims = list(weight.dims)
    if node.op_type == "Conv" and len(dims) != 4:
        return "fp32", f"{len(dims) - 2}-D convolution: quantized kernels cover 2-D only"
    if node.op_type == "MatMul" and len(dims) != 2:
        return "fp32", "MatMul weight is not a matrix"
    if requested == "int4" and node.op_type in MATRIX_OPS:
        k = _gemm_k(node, dims)
        if k % INT4_BLOCK:
            return "int8", f"INT4 block quantization needs K divisible by {INT4_BLOCK}; K={k}"
        return "int4", f"weight-only INT4, blocks of {INT4_BLOCK} along K"
    if requested == "int4" and target == "tensorrt":
        return "int4", "4-bit grid stored as INT8 (TensorRT has no INT4 convolution)"
    return requested, "requested"


# ort-cpu: the first conv stays FP32 when it reads an image with few channels into few channels. ONNX
# Runtime's QLinearConv runs it as a GEMM with K = C_in * kh * kw (16..75) after quantizing the
# image and transposing to NHWC, which costs more than the float NCHWc conv it replaces. Measured
# (2-core Xeon, AVX-512 VNNI + AMX, 1 thread, bs32, INT8 / FP32): mnist_cnn_a_adv 1.18x -> 1.83x,
# cifar_cnn_a_adv 1.03x -> 1.46x, resnet2b 1.24x -> 1.45x, convex_adversarial 1.23x -> 1.56x,
# cifar_conv_small 0.84x -> 1.26x, MadryCNN tiny 0.49x -> 0.84x; ResNet-18's 3 -> 64 conv1 is
# 3% faster in INT8, hence the bound on the output channels.
_NARROW_INPUT_CHANNELS, _NARROW_OUTPUT_CHANNELS = 4, 32


def _narrow_image_conv(node: onnx.NodeProto, weight: onnx.TensorProto, target: str) -> bool:
    dims = list(weight.dims)
    return (
        target == "ort-cpu"
        and node.op_type == "Conv"
        and len(dims) == 4
        and dims[1] <= _NARROW_INPUT_CHANNELS
        and dims[0] <= _NARROW_OUTPUT_CHANNELS
    )


def _gemm_k(node: onnx.NodeProto, dims: list[int]) -> int:
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return dims[1] if (node.op_type == "Gemm" and trans_b) else dims[0]
