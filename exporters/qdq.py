"""Insert Q/DQ nodes into a float ONNX graph, following a precision plan and a target profile.

The result is a standard QDQ graph: every quantized tensor t becomes
Q(t) -> DQ -> consumers, weights are stored as integers behind a DequantizeLinear, and
biases of quantized layers are int32 at scale s_x * s_w. Runtimes fuse these patterns into
integer kernels; the twin (`deploy_robust.quant.twin`) runs the same graph with
straight-through gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy_robust.exporters.graph_edit import GraphEditor, int4_tensor
from deploy_robust.progress import bar
from deploy_robust.exporters.profiles import TargetProfile
from deploy_robust.quant.gptq import gptq_round
from deploy_robust.quant.plan import INT4_BLOCK, LayerPlan
from deploy_robust.quant.scheme import (ActivationParams, activation_params, bias_safe_min_scale, quantize_bias,
                                        quantize_blockwise, quantize_per_channel)
from deploy_robust.quant.scheme import weight_levels as grid_levels
from deploy_robust.onnx_ops import QUANTIZABLE_OPS

Ranges = dict[str, tuple[float, float]]


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    activations: dict[str, dict] = field(default_factory=dict)  # tensor -> scale, zero_point, dtype
    stores_int4: bool = False


def tensors_to_calibrate(model: onnx.ModelProto, plan: list[LayerPlan], profile: TargetProfile) -> list[str]:
    """The activation tensors whose ranges the Q/DQ graph needs (calibration collects exactly these)."""
    return sorted(_activation_tensors(GraphEditor(model), plan, profile))


def quantize_model(model: onnx.ModelProto, plan: list[LayerPlan], ranges: Ranges, profile: TargetProfile, *,
                   fixed: dict[str, ActivationParams] | None = None,
                   weight_levels: dict[str, int] | None = None,
                   weight_scales: dict[str, float] | None = None,
                   input_grams: dict[str, np.ndarray] | None = None,
                   rounding_cache: dict | None = None) -> QuantizeResult:
    """`fixed` gives activation tensors (those the profile picks, and any others named) their scale and
    zero point directly (a trained grid) instead of a calibrated range; `weight_levels` (by node) the
    largest |q| of a layer's weight grid, `weight_scales` (by node) its per-tensor scale; `input_grams`
    (by node, from `calibrators.layer_inputs`) switches that layer's weights from round-to-nearest to
    error-compensating rounding (`quant.gptq`) on the same grid; `rounding_cache` (a dict the caller
    keeps) saves those roundings across calls that quantize the same layers on the same grids."""
    model = _copy(model)
    editor = GraphEditor(model)
    fixed, weight_levels, weight_scales = fixed or {}, weight_levels or {}, weight_scales or {}
    input_grams = input_grams or {}
    tensors = _activation_tensors(editor, plan, profile) | set(fixed)
    missing = sorted(t for t in tensors if t not in ranges and t not in fixed)
    if missing:
        raise ValueError(f"no calibrated range for {', '.join(missing[:5])}")
    result = QuantizeResult(model)
    params = _activation_params(editor, tensors, ranges, fixed, profile, result)
    by_node = {p.node: p for p in plan}
    # GPTQ's rounding takes seconds per layer of a real-size model (minutes in all): shown per layer
    shown = bar(sum(1 for p in plan if p.node in input_grams), desc="weight rounding (gptq, per layer)") if input_grams else None
    for node in list(model.graph.node):
        layer = by_node.get(node.name)
        if layer is None:
            continue
        if shown is not None and node.name in input_grams:
            shown.update()
        if layer.precision == "fp16":
            _to_fp16(editor, node)
        elif layer.precision in ("int8", "int4"):
            x_params = params.get(node.input[0])
            if layer.weight_only_int4:
                _int4_weight_only(editor, node)
                result.stores_int4 = True
            else:
                stored_int4 = layer.precision == "int4" and profile.int4_conv_storage == "int4"
                per_channel = node.op_type == "Conv" or profile.per_channel_gemm
                bits = 4 if layer.precision == "int4" else 8
                levels = weight_levels.get(node.name) or (profile.int8_weight_levels if bits == 8 else None)
                _quantize_weights(editor, node, bits, stored_int4, x_params, per_channel, levels,
                                  weight_scales.get(node.name), input_grams.get(node.name), rounding_cache)
                result.stores_int4 |= stored_int4
    for tensor in sorted(tensors):
        _insert_qdq(editor, tensor, params[tensor], profile.dequantized_consumers)
    if shown is not None:
        shown.close()
    editor.remove_unused_initializers()
    editor.topological_sort()
    return result


def _activation_params(editor: GraphEditor, tensors: set[str], ranges: Ranges, fixed: dict[str, ActivationParams],
                       profile: TargetProfile, result: QuantizeResult) -> dict[str, ActivationParams]:
    """Each activation tensor's scale and zero point: given (`fixed`, a trained grid) or from its calibrated
    range; each is recorded in `result.activations`."""
    params: dict[str, ActivationParams] = {}
    for tensor in sorted(tensors):
        if tensor in fixed:
            p = fixed[tensor]
            low_high = ((0 - p.zero_point) * float(p.scale), ((127 if p.signed else 255) - p.zero_point) * float(p.scale))
        else:
            # a data-movement op's output takes the scale of the tensor it moves, so Q/DQ cancels around the op
            low_high = ranges[_moved_source(editor, tensor, tensors, profile)]
            p = activation_params(*low_high, signed=profile.signed_activations)
        params[tensor] = p
        result.activations[tensor] = {"scale": float(p.scale), "zero_point": p.zero_point,
                                      "dtype": "int8" if p.signed else "uint8", "range": list(map(float, low_high))}
    return params


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


# ---- which activations are quantized --------------------------------------------------

def _activation_tensors(editor: GraphEditor, plan: list[LayerPlan], profile: TargetProfile) -> set[str]:
    quantized_layers = {p.node for p in plan if p.precision in ("int8", "int4")
                        and (profile.quantize_weight_only_inputs or not p.weight_only_int4)}
    if not quantized_layers:
        return set()
    chosen: set[str] = set()

    def activation(name: str) -> bool:
        return bool(name) and name not in editor.inits

    for node in editor.graph.node:
        if node.op_type in QUANTIZABLE_OPS:
            if node.name in quantized_layers and activation(node.input[0]):
                chosen.add(node.input[0])
        elif node.op_type == "Add" and all(activation(i) for i in node.input) and profile.residual_add != "none":
            if profile.residual_add == "all":
                chosen.update(node.input)
            else:
                chosen.add(_skip_branch(editor, node))
        elif node.op_type in profile.quantized_consumers and activation(node.input[0]):
            chosen.add(node.input[0])
    # Carry Q/DQ back across shape-only ops so the op producing the data ends in a Q.
    frontier = list(chosen)
    while frontier:
        tensor = frontier.pop()
        producer = editor.producer.get(tensor)
        if producer is not None and producer.op_type in profile.carry_through and activation(producer.input[0]):
            source = producer.input[0]
            if source not in chosen:
                chosen.add(source)
                frontier.append(source)
    return chosen


def _moved_source(editor: GraphEditor, tensor: str, tensors: set[str], profile: TargetProfile) -> str:
    """The quantized tensor `tensor` was carried from across data-movement ops (itself if none)."""
    producer = editor.producer.get(tensor)
    while producer is not None and producer.op_type in profile.carry_through and producer.input[0] in tensors:
        tensor = producer.input[0]
        producer = editor.producer.get(tensor)
    return tensor


def _skip_branch(editor: GraphEditor, add: onnx.NodeProto) -> str:
    """The residual Add input to quantize for TensorRT: the one not coming straight from a Conv
    (that Conv fuses the Add into its epilogue); between two Convs, the 1x1 shortcut."""
    producers = [editor.producer.get(i) for i in add.input]
    from_conv = [p is not None and p.op_type == "Conv" for p in producers]
    if from_conv.count(True) == 1:
        return add.input[from_conv.index(False)]
    if all(from_conv):
        kernels = [_kernel_area(editor, p) for p in producers]
        return add.input[int(np.argmin(kernels))] if kernels[0] != kernels[1] else add.input[1]
    return add.input[1]


def _kernel_area(editor: GraphEditor, conv: onnx.NodeProto) -> int:
    dims = list(editor.inits[conv.input[1]].dims) if conv.input[1] in editor.inits else [0, 0, 9, 9]
    return int(np.prod(dims[2:]))


# ---- rewriting ---------------------------------------------------------------------------

def _insert_qdq(editor: GraphEditor, tensor: str, p: ActivationParams, readers: tuple[str, ...] | None) -> None:
    base = tensor.replace(":", "_")
    scale = editor.add_initializer(f"{base}_scale", np.array(p.scale, dtype=np.float32))
    zero = editor.add_initializer(f"{base}_zero_point", np.array(p.zero_point, dtype=p.dtype))
    quantized, dequantized = editor.fresh(f"{base}_q"), editor.fresh(f"{base}_dq")
    consumers = list(editor.consumers.get(tensor, []))
    q = editor.make_node("QuantizeLinear", [tensor, scale, zero], [quantized], f"{base}_QuantizeLinear")
    dq = editor.make_node("DequantizeLinear", [quantized, scale, zero], [dequantized], f"{base}_DequantizeLinear")
    editor.graph.node.extend([q, dq])
    for consumer in consumers:
        if readers is not None and consumer.op_type not in readers:
            continue
        for i, name in enumerate(consumer.input):
            if name == tensor:
                consumer.input[i] = dequantized


def _weight_axis(node: onnx.NodeProto) -> int:
    """Axis of the output channels in the weight: 0 for Conv and Gemm(transB=1), 1 for MatMul/Gemm."""
    if node.op_type == "Conv":
        return 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if (node.op_type == "Gemm" and trans_b) else 1


def _quantize_weights(editor: GraphEditor, node: onnx.NodeProto, bits: int, store_int4: bool,
                      x_params: ActivationParams | None, per_channel: bool = True, levels: int | None = None,
                      explicit_scale: float | None = None, gram: np.ndarray | None = None,
                      rounding_cache: dict | None = None) -> None:
    weight = numpy_helper.to_array(editor.inits[node.input[1]])
    axis = _weight_axis(node)
    bias = None
    if len(node.input) > 2 and node.input[2] in editor.inits and x_params is not None:
        bias = numpy_helper.to_array(editor.inits[node.input[2]])
        if bias.ndim != 1 or len(bias) != weight.shape[axis]:
            bias = None
    floor = bias_safe_min_scale(bias, x_params.scale) if bias is not None else 0.0
    if explicit_scale is not None:  # a trained grid with its own scale (weights already on it)
        per_channel = True
        scale = np.full(weight.shape[axis], explicit_scale, np.float32)
        q = np.clip(np.round(weight / np.float32(explicit_scale)), -levels, levels).astype(np.int8)
    elif per_channel:
        q, scale = quantize_per_channel(weight, bits, axis, levels, floor)
    else:  # one scale for the whole tensor, kept as a vector for the bias arithmetic
        q, tensor_scale = quantize_per_channel(weight.reshape(1, -1), bits, 0, levels, np.max(floor))
        q = q.reshape(weight.shape)
        scale = np.full(weight.shape[axis], tensor_scale[0], np.float32)
    if gram is not None and explicit_scale is None:
        levels = levels or grid_levels(bits)
        key = (node.name, levels, scale.tobytes())
        cache = rounding_cache if rounding_cache is not None else {}
        if key not in cache:
            cache[key] = _error_compensated(weight, scale, levels, gram, node.op_type, axis)
        q = cache[key]
    base = node.input[1]
    if store_int4:
        q_name = editor.fresh(f"{base}_int4")
        zero_name = editor.fresh(f"{base}_zero_point")
        for tensor in (int4_tensor(q_name, q), int4_tensor(zero_name, np.zeros(len(scale), np.int8))):
            editor.graph.initializer.append(tensor)
            editor.inits[tensor.name] = tensor
    else:
        q_name = editor.add_initializer(f"{base}_quantized", q)
        zero_name = editor.add_initializer(f"{base}_zero_point", np.zeros(len(scale), np.int8))
    if per_channel:
        scale_name = editor.add_initializer(f"{base}_scale", scale)
    else:
        scale_name = editor.add_initializer(f"{base}_scale", np.array(scale[0], np.float32))
        zero_name = editor.add_initializer(f"{base}_zero_point", np.array(0, np.int8))
    w_dq = editor.fresh(f"{base}_dq")
    editor.graph.node.append(editor.make_node("DequantizeLinear", [q_name, scale_name, zero_name], [w_dq],
                                              f"{base}_DequantizeLinear", axis=axis))
    node.input[1] = w_dq
    if bias is not None:
        qb, bias_scale = quantize_bias(bias, x_params.scale, scale)
        b_base = node.input[2]
        qb_name = editor.add_initializer(f"{b_base}_quantized", qb)
        bs_name = editor.add_initializer(f"{b_base}_scale", bias_scale)
        bz_name = editor.add_initializer(f"{b_base}_zero_point", np.zeros(len(qb), np.int32))
        b_dq = editor.fresh(f"{b_base}_dq")
        editor.graph.node.append(editor.make_node("DequantizeLinear", [qb_name, bs_name, bz_name], [b_dq],
                                                  f"{b_base}_DequantizeLinear", axis=0))
        node.input[2] = b_dq


def _error_compensated(weight: np.ndarray, scale: np.ndarray, levels: int, gram: np.ndarray, op: str,
                       axis: int) -> np.ndarray:
    """GPTQ rounding on the grid `scale` already fixed: Conv weights per group (each group sees its own
    input channels), Gemm/MatMul weights as (out, k)."""
    if op == "Conv":
        groups = gram.shape[0]
        per_group = weight.shape[0] // groups
        rows = weight.reshape(weight.shape[0], -1)
        q = np.concatenate([gptq_round(rows[g * per_group:(g + 1) * per_group], scale[g * per_group:(g + 1) * per_group],
                                       levels, gram[g]) for g in range(groups)])
        return q.reshape(weight.shape)
    matrix = weight if axis == 0 else weight.T
    q = gptq_round(matrix, scale, levels, gram[0])
    return q if axis == 0 else q.T


def _int4_weight_only(editor: GraphEditor, node: onnx.NodeProto) -> None:
    """Gemm/MatMul -> MatMul(x, DQ(int4 blocks of W as [K, N])) (+ bias): opset-21 block quantization."""
    weight = numpy_helper.to_array(editor.inits[node.input[1]]).astype(np.float32)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("transB", 0):
            weight = weight.T
        alpha = attrs.get("alpha", 1.0)
        weight = weight * np.float32(alpha)
    q, scale = quantize_blockwise(weight, 4, INT4_BLOCK, axis=0)
    base = node.input[1]
    q_name = editor.fresh(f"{base}_int4")
    editor.graph.initializer.append(int4_tensor(q_name, q))
    scale_name = editor.add_initializer(f"{base}_scale", scale)
    w_dq = editor.fresh(f"{base}_dq")
    dq = editor.make_node("DequantizeLinear", [q_name, scale_name], [w_dq], f"{base}_DequantizeLinear",
                          axis=0, block_size=INT4_BLOCK)
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else ""
    output = node.output[0]
    matmul_out = editor.fresh(f"{output}_matmul") if bias else output
    matmul = editor.make_node("MatMul", [node.input[0], w_dq], [matmul_out], f"{node.name}_MatMul")
    new_nodes = [dq, matmul]
    if bias:
        beta = attrs.get("beta", 1.0)
        if beta != 1.0 and bias in editor.inits:
            bias = editor.add_initializer(f"{bias}_scaled", numpy_helper.to_array(editor.inits[bias]) * np.float32(beta))
        new_nodes.append(editor.make_node("Add", [matmul_out, bias], [output], f"{node.name}_Add"))
    index = list(editor.graph.node).index(node)
    editor.graph.node.remove(node)
    for offset, n in enumerate(new_nodes):
        editor.graph.node.insert(index + offset, n)


def _to_fp16(editor: GraphEditor, node: onnx.NodeProto) -> None:
    """Run one layer in float16: fp16 weights, Cast in, Cast out (the casts are baked into the graph)."""
    for i in range(1, len(node.input)):
        name = node.input[i]
        if name in editor.inits:
            half = numpy_helper.from_array(numpy_helper.to_array(editor.inits[name]).astype(np.float16),
                                           editor.fresh(f"{name}_fp16"))
            editor.graph.initializer.append(half)
            editor.inits[half.name] = half
            node.input[i] = half.name
    x16 = editor.fresh(f"{node.input[0]}_fp16")
    editor.graph.node.append(editor.make_node("Cast", [node.input[0]], [x16], f"{node.name}_CastIn", to=TensorProto.FLOAT16))
    node.input[0] = x16
    out32 = node.output[0]
    out16 = editor.fresh(f"{out32}_fp16")
    node.output[0] = out16
    editor.graph.node.append(editor.make_node("Cast", [out16], [out32], f"{node.name}_CastOut", to=TensorProto.FLOAT))
