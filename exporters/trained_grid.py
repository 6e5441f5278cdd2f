"""Q/DQ on a trained grid: a Defensive Quantization model exports with exactly the scales it trained with.

The float graph is the model's deploy form (weights already on their grids, each bounded
activation as Min(Relu(x), bound), the input quantizer the identity). Q/DQ then goes on the
input of every weighted op, carried back across data movement (Flatten, Reshape, ...) to:
  - a bounded activation: uint8, scale bound / (2^a - 1), zero point 0;
  - the model input: the input quantizer's 8-bit scale and zero point;
and nowhere else (no calibrated ranges: what was not quantized in training stays float, e.g.
the inputs of a residual Add). Weights are re-quantized per channel with the trained number
of levels, which reproduces their integers exactly (they are on the grid already).

Finally an a-bit activation (a < 8) becomes Q(x) -> Clip(0, 2^a - 1) on uint8 -> DQ: the
producing Conv fuses with its Q into ONNX Runtime's integer kernel (zero point 0 makes the
ReLU redundant), and the integer Clip keeps the value on the a-bit grid, so the engine
computes what was trained: round(clip(x, 0, b) / s) = clip(round(x / s), 0, 2^a - 1) when
b = (2^a - 1) s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from deploy_robust.errors import UserError
from deploy_robust.exporters.graph_edit import GraphEditor
from deploy_robust.exporters.profiles import WEIGHTED, TargetProfile
from deploy_robust.exporters.qdq import QuantizeResult, moved_source, quantize_model, tensors_to_calibrate
from deploy_robust.quant.plan import LayerPlan, layer_name, weighted_nodes
from deploy_robust.quant.scheme import ActivationParams

_NORMALIZATION_OPS = ("Sub", "Div")


@dataclass(frozen=True)
class TrainedGrid:
    weight_bits: dict[str, int]              # torch layer name -> bits of its weight grid
    weight_levels: dict[str, int]            # torch layer name -> largest |q|
    activation_bits: dict[float, int]        # bound (float32 value) -> bits of the activation it clips
    input_params: ActivationParams           # the 8-bit input quantizer


def quantize_on_trained_grid(model: onnx.ModelProto, grid: TrainedGrid, profile: TargetProfile) -> tuple[QuantizeResult, list[LayerPlan]]:
    if profile.signed_activations:
        raise UserError(f"a Defensive Quantization model exports on its trained grid to --target ort-cpu; "
                        f"{profile.name} needs symmetric int8 activations, which the 8-bit asymmetric input "
                        "quantizer it trained with does not fit")
    plan = []
    levels = {}
    for node, weight in weighted_nodes(model):
        name = layer_name(weight.name)
        if name not in grid.weight_levels:
            raise UserError(f"layer {name} of the exported graph has no trained weight grid")
        a_bits = "/".join(str(b) for b in sorted(set(grid.activation_bits.values())))
        plan.append(LayerPlan(name, node.name, node.op_type, "int8", "int8",
                              f"trained grid w{grid.weight_bits[name]}a{a_bits} on int8 kernels, no recalibration"))
        levels[node.name] = grid.weight_levels[name]
    only_weighted = replace(profile, quantized_consumers=WEIGHTED, residual_add="none")
    editor = GraphEditor(model)
    tensors = set(tensors_to_calibrate(model, plan, only_weighted))
    fixed = {t: _trained_params(editor, moved_source(editor, t, tensors, only_weighted), grid) for t in tensors}
    result = quantize_model(model, plan, {}, only_weighted, fixed=fixed, weight_levels=levels)
    _clip_in_integers(result.model, grid)
    return result, plan


def _trained_params(editor: GraphEditor, tensor: str, grid: TrainedGrid) -> ActivationParams:
    bound = _activation_bound(editor, tensor)
    if bound is not None:
        bits = next((b for value, b in grid.activation_bits.items() if np.isclose(value, bound, rtol=1e-6)), None)
        if bits is None:
            raise UserError(f"activation {tensor} is clipped at {bound:g}, which no trained quantizer has")
        return ActivationParams(np.float32(np.float32(bound) / np.float32(2 ** bits - 1)), 0, False)
    if _is_model_input(editor, tensor):
        return grid.input_params
    raise UserError(f"tensor {tensor} feeds a quantized layer but was not quantized in training")


def _activation_bound(editor: GraphEditor, tensor: str) -> float | None:
    """b when `tensor` = Min(Relu(x), b) with b a scalar constant: a bounded activation."""
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
    return float(value.reshape(()))


def _is_model_input(editor: GraphEditor, tensor: str) -> bool:
    """The graph input, possibly after the folded normalization ((x - mean) / std)."""
    inputs = {i.name for i in editor.graph.input}
    while tensor not in inputs:
        node = editor.producer.get(tensor)
        if node is None or node.op_type not in _NORMALIZATION_OPS:
            return False
        tensor = node.input[0]
    return True


def _clip_in_integers(model: onnx.ModelProto, grid: TrainedGrid) -> None:
    """Relu -> Min(b) -> Q(s, 0)  becomes  Q(s, 0) -> Clip(0, 2^a - 1) (uint8); Relu and Min go."""
    editor = GraphEditor(model)
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        minimum = editor.producer.get(q.input[0])
        if minimum is None or _activation_bound(editor, q.input[0]) is None:
            continue
        if len(editor.consumers[minimum.output[0]]) != 1:
            continue  # the clipped float value is read elsewhere too: keep it
        relu = editor.producer[next(i for i in minimum.input if i not in editor.inits)]
        bound = _activation_bound(editor, q.input[0])
        bits = next(b for value, b in grid.activation_bits.items() if np.isclose(value, bound, rtol=1e-6))
        q.input[0] = relu.input[0]
        model.graph.node.remove(minimum)
        if len(editor.consumers[relu.output[0]]) == 1:
            model.graph.node.remove(relu)
        editor.refresh()
        if bits == 8:
            continue  # the uint8 range is the 8-bit grid: Q alone keeps it
        quantized = q.output[0]
        clipped = editor.fresh(f"{quantized}_clip")
        low = editor.add_initializer(f"{quantized}_clip_min", np.array(0, np.uint8))
        high = editor.add_initializer(f"{quantized}_clip_max", np.array(2 ** bits - 1, np.uint8))
        for consumer in list(editor.consumers[quantized]):
            for i, name in enumerate(consumer.input):
                if name == quantized:
                    consumer.input[i] = clipped
        model.graph.node.append(editor.make_node("Clip", [quantized, low, high], [clipped], f"{q.name}_Clip"))
        editor.refresh()
    editor.remove_unused_initializers()
    editor.topological_sort()
