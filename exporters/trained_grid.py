"""Q/DQ on a trained grid: models that carry their own quantization (Defensive Quantization models,
EMPIR members) export with exactly the scales they trained with.

The float graph is the model's deploy form (weights already on their grids, each bounded
activation as Min(Relu(x), bound), the input quantizer the identity). Q/DQ then goes on the
input of every quantized weighted op, its scale taken from what the input was moved from
(Flatten, Reshape, max-pool, ...):
  - a bounded activation: scale bound / (2^a - 1), zero point 0, with a the bits the reading
    layers were trained with (bits are keyed on the layers: the ONNX optimizer merges equal
    bounds and equal nodes);
  - the model input: the input quantizer's 8-bit scale and zero point;
and nowhere else (no calibrated ranges: what was not quantized in training stays float, e.g.
the inputs of a residual Add, full-precision layers). Weights are re-quantized with the
trained number of levels (or an explicit scale), which gives back their integers exactly.

Finally, for ONNX Runtime an a-bit activation becomes Q(x) -> Clip(0, 2^a - 1) -> DQ with the
Clip on the integers (uint8 or int8): the producing Conv fuses with its Q into ONNX Runtime's
integer kernel, and the integer Clip keeps the value on the a-bit grid, so the engine
computes what was trained: round(clip(x, 0, b) / s) = clip(round(x / s), 0, 2^a - 1) when
b = (2^a - 1) s. For TensorRT the bound stays a float Min(Relu(x), b) before an int8 Q, the
form its fusions take (Q/DQ only on weighted inputs). Signed targets (ort-cuda, tensorrt)
need the int8 input grid (`dq --input-grid int8`) and at most 7 activation bits (0..127).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from deploy_robust.errors import UserError
from deploy_robust.exporters.graph_edit import GraphEditor
from deploy_robust.exporters.profiles import DATA_MOVEMENT, TargetProfile
from deploy_robust.onnx_ops import QUANTIZABLE_OPS
from deploy_robust.exporters.qdq import QuantizeResult, quantize_model, tensors_to_calibrate
from deploy_robust.quant.plan import LayerPlan, layer_name, weighted_nodes
from deploy_robust.quant.scheme import ActivationParams, TrainedGrid

_NORMALIZATION_OPS = ("Sub", "Div")


# x86 CPUs without VNNI add pairs of u8 x s8 products in int16 (see the ort-cpu profile)
_INT16_PAIR_LIMIT = 32767


def quantize_on_trained_grid(
    model: onnx.ModelProto, grid: TrainedGrid, profile: TargetProfile
) -> tuple[QuantizeResult, list[LayerPlan]]:
    if profile.signed_activations:  # int8 with zero point 0 everywhere
        if grid.input_params is not None and not grid.input_params.signed:
            raise UserError(
                f"--target {profile.name} needs int8 symmetric activations; this model was trained with "
                "a uint8 input grid, which only --target ort-cpu runs exactly (train it with "
                "`dq --input-grid int8` for every target)"
            )
        if grid.input_bits and max(grid.input_bits.values()) > 7:
            raise UserError(
                f"--target {profile.name} holds activations in int8 (0..127): 8-bit unsigned "
                "activations do not fit; train with at most 7 activation bits (e.g. --bits 8/7)"
            )
    plan, levels, scales, reads = [], {}, {}, {}
    for node, weight in weighted_nodes(model):
        name = layer_name(weight.name)
        if name not in grid.weight_levels:
            plan.append(LayerPlan(name, node.name, node.op_type, "fp32", "fp32", "full precision in training"))
            continue
        plan.append(
            LayerPlan(
                name,
                node.name,
                node.op_type,
                "int8",
                "int8",
                f"trained grid: {grid.weight_bits[name]}-bit weights on int8 kernels, no recalibration",
            )
        )
        levels[node.name] = grid.weight_levels[name]
        if name in grid.weight_scales:
            scales[node.name] = grid.weight_scales[name]
        if name in grid.input_bits:
            reads[node.name] = grid.input_bits[name]
    _split_shared_activations(model, reads)
    editor = GraphEditor(model)
    bits = _activation_bits(editor, reads)
    # Linear layers trained per tensor (see deploy_robust.transforms.dq.quantizers) stay per tensor everywhere
    only_weighted = replace(profile, quantized_consumers=QUANTIZABLE_OPS, residual_add="none", per_channel_gemm=False)
    tensors = set(tensors_to_calibrate(model, plan, only_weighted))
    if profile.integer_clip:  # ONNX Runtime: every quantized bounded activation ends in a Q, so its producer fuses
        tensors |= set(bits)
    signed = profile.signed_activations
    fixed = {t: _trained_params(editor, _moved_from(editor, t), bits, grid, signed) for t in tensors}
    if profile.int8_weight_levels < 127:
        _check_int16_pairs(editor, plan, levels, bits, profile)
    result = quantize_model(model, plan, {}, only_weighted, fixed=fixed, weight_levels=levels, weight_scales=scales)
    if profile.integer_clip:
        _clip_in_integers(result.model, bits)
    return result, plan


def _moved_from(editor: GraphEditor, tensor: str) -> str:
    """The tensor whose values `tensor` holds, moved by data-movement ops or max-pooled (a max of grid
    values is on the same grid): its scale is the trained one."""
    producer = editor.producer.get(tensor)
    while producer is not None and producer.op_type in DATA_MOVEMENT + ("MaxPool",):
        tensor = producer.input[0]
        producer = editor.producer.get(tensor)
    return tensor


def _split_shared_activations(model: onnx.ModelProto, reads: dict[str, int]) -> None:
    """Give a layer its own Min(Relu(x), b) where the ONNX optimizer merged identical ones that layers
    read at different bit widths (e.g. ensemble members quantizing the same image differently)."""
    editor = GraphEditor(model)
    nodes = {n.name: n for n in model.graph.node}
    first_bits: dict[str, int] = {}
    for node_name, want in reads.items():
        node = nodes[node_name]
        source = _moved_from(editor, node.input[0])
        if _bounded_activation(editor, source) is None or first_bits.setdefault(source, want) == want:
            continue
        if source != node.input[0]:
            raise UserError(
                f"layer {node_name} reads a shared activation at {want} bits through other ops; "
                "export it with --precision fp32"
            )
        minimum = editor.producer[source]
        relu = editor.producer[next(i for i in minimum.input if i not in editor.inits)]
        bound = next(i for i in minimum.input if i in editor.inits)
        relu_out, min_out = editor.fresh(f"{node_name}_input_relu"), editor.fresh(f"{node_name}_input_min")
        model.graph.node.extend(
            [
                editor.make_node("Relu", [relu.input[0]], [relu_out], f"{node_name}_InputRelu"),
                editor.make_node("Min", [relu_out, bound], [min_out], f"{node_name}_InputMin"),
            ]
        )
        node.input[0] = min_out
        editor.refresh()
    editor.topological_sort()


def _activation_bits(editor: GraphEditor, reads: dict[str, int]) -> dict[str, int]:
    """{bounded activation tensor: bits}, from the layers that read it (they must agree)."""
    nodes = {n.name: n for n in editor.graph.node}
    bits: dict[str, int] = {}
    for node_name, want in reads.items():
        source = _moved_from(editor, nodes[node_name].input[0])
        if _bounded_activation(editor, source) is None:
            continue
        if bits.setdefault(source, want) != want:
            raise UserError(f"activation {source} is read at {bits[source]} and {want} bits")
    return bits


def _check_int16_pairs(
    editor: GraphEditor, plan: list[LayerPlan], levels: dict[str, int], bits: dict[str, int], profile: TargetProfile
) -> None:
    """Refuse grids whose u8 x s8 pair sums overflow int16 (2 * activation max * weight max > 32767)."""
    nodes = {n.name: n for n in editor.graph.node}
    for layer in (p for p in plan if p.precision == "int8"):
        a_bits = bits.get(_moved_from(editor, nodes[layer.node].input[0]))
        top = 2**a_bits - 1 if a_bits is not None else 255
        if 2 * top * levels[layer.node] > _INT16_PAIR_LIMIT:
            raise UserError(
                f"layer {layer.name}: {levels[layer.node]} weight levels x {top} activation levels "
                f"overflow {profile.name}'s int16 pair sums on CPUs without VNNI; export this model "
                "with --precision fp32"
            )


def _trained_params(
    editor: GraphEditor, tensor: str, bits: dict[str, int], grid: TrainedGrid, signed: bool
) -> ActivationParams:
    if tensor in bits:
        bound = _bounded_activation(editor, tensor)[1]
        return ActivationParams(np.float32(np.float32(bound) / np.float32(2 ** bits[tensor] - 1)), 0, signed)
    if grid.input_params is not None and _is_model_input(editor, tensor):
        return grid.input_params
    raise UserError(f"tensor {tensor} feeds a quantized layer but was not quantized in training")


def _bounded_activation(editor: GraphEditor, tensor: str) -> tuple[str, float] | None:
    """(bound initializer, bound) when `tensor` = Min(Relu(x), b) with b a scalar constant."""
    node = editor.producer.get(tensor)
    if node is None or node.op_type != "Min" or len(node.input) != 2:
        return None
    const = [i for i in node.input if i in editor.inits]
    other = [i for i in node.input if i not in editor.inits]
    if len(const) != 1 or len(other) != 1:
        return None
    relu = editor.producer.get(other[0])
    value = numpy_helper.to_array(editor.inits[const[0]])
    if relu is None or relu.op_type != "Relu" or value.size != 1:
        return None
    return const[0], float(value.reshape(()))


def _is_model_input(editor: GraphEditor, tensor: str) -> bool:
    """The graph input, possibly after the folded normalization ((x - mean) / std)."""
    inputs = {i.name for i in editor.graph.input}
    while tensor not in inputs:
        node = editor.producer.get(tensor)
        if node is None or node.op_type not in _NORMALIZATION_OPS:
            return False
        tensor = node.input[0]
    return True


def _clip_in_integers(model: onnx.ModelProto, bits: dict[str, int]) -> None:
    """Relu -> Min(b) -> Q(s, 0)  becomes  Q(s, 0) -> Clip(0, 2^a - 1) (in the Q's integer type); Relu and
    Min go (zero point 0 saturates negatives to 0 in uint8; in int8 the Clip's 0 does it)."""
    editor = GraphEditor(model)
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        a_bits = bits.get(q.input[0])
        minimum = editor.producer.get(q.input[0])
        if a_bits is None or len(editor.consumers[minimum.output[0]]) != 1:
            continue  # not a bounded activation, or its clipped float value is read elsewhere too
        relu = editor.producer[next(i for i in minimum.input if i not in editor.inits)]
        q.input[0] = relu.input[0]
        model.graph.node.remove(minimum)
        if len(editor.consumers[relu.output[0]]) == 1:
            model.graph.node.remove(relu)
        editor.refresh()
        dtype = numpy_helper.to_array(editor.inits[q.input[2]]).dtype
        if a_bits == 8 and dtype == np.uint8:
            continue  # the uint8 range is the 8-bit grid: Q alone keeps it
        quantized = q.output[0]
        clipped = editor.fresh(f"{quantized}_clip")
        low = editor.add_initializer(f"{quantized}_clip_min", np.array(0, dtype))
        high = editor.add_initializer(f"{quantized}_clip_max", np.array(2**a_bits - 1, dtype))
        for consumer in list(editor.consumers[quantized]):
            for i, name in enumerate(consumer.input):
                if name == quantized:
                    consumer.input[i] = clipped
        model.graph.node.append(editor.make_node("Clip", [quantized, low, high], [clipped], f"{q.name}_Clip"))
        editor.refresh()
    editor.remove_unused_initializers()
    editor.topological_sort()
