"""Q/DQ on a trained grid: a Defensive Quantization model exports with exactly the scales it trained with.

The float graph is the model's deploy form (weights already on their grids, each bounded
activation as Min(Relu(x), bound), the input quantizer the identity). Q/DQ then goes on the
input of every weighted op, carried back across data movement (Flatten, Reshape, ...) to:
  - a bounded activation: uint8, scale bound / (2^a - 1), zero point 0;
  - the model input: the input quantizer's 8-bit scale and zero point;
and nowhere else (no calibrated ranges: what was not quantized in training stays float, e.g.
the inputs of a residual Add). Weights are re-quantized per channel with the trained number
of levels, which reproduces their integers exactly (they are on the grid already).

Finally, for ONNX Runtime an a-bit activation becomes Q(x) -> Clip(0, 2^a - 1) -> DQ with the
Clip on the integers (uint8 or int8): the producing Conv fuses with its Q into ONNX Runtime's
integer kernel, and the integer Clip keeps the value on the a-bit grid, so the engine
computes what was trained: round(clip(x, 0, b) / s) = clip(round(x / s), 0, 2^a - 1) when
b = (2^a - 1) s. For TensorRT the bound stays a float Min(Relu(x), b) before an int8 Q, the
form its fusions take (Q/DQ only on weighted inputs). Signed targets (ort-cuda, tensorrt)
need the int8 input grid (`dq --input-grid int8`) and at most 7 activation bits (0..127).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from deploy_robust.errors import UserError
from deploy_robust.exporters.graph_edit import GraphEditor
from deploy_robust.exporters.profiles import DATA_MOVEMENT, WEIGHTED, TargetProfile
from deploy_robust.exporters.qdq import QuantizeResult, quantize_model, tensors_to_calibrate
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
    if profile.signed_activations:  # int8 with zero point 0 everywhere
        if not grid.input_params.signed:
            raise UserError(f"--target {profile.name} needs int8 symmetric activations; this model was trained with "
                            "a uint8 input grid, which only --target ort-cpu runs exactly (train it with "
                            "`dq --input-grid int8` for every target)")
        if max(grid.activation_bits.values()) > 7:
            raise UserError(f"--target {profile.name} holds activations in int8 (0..127): 8-bit unsigned "
                            "activations do not fit; train with at most 7 activation bits (e.g. --bits 8/7)")
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
    # Linear layers trained per tensor (see deploy_robust.transforms.dq.quantizers) stay per tensor everywhere
    only_weighted = replace(profile, quantized_consumers=WEIGHTED, residual_add="none", per_channel_gemm=False)
    editor = GraphEditor(model)
    tensors = set(tensors_to_calibrate(model, plan, only_weighted))
    signed = profile.signed_activations
    fixed = {t: _trained_params(editor, _moved_from(editor, t), grid, signed) for t in tensors}
    result = quantize_model(model, plan, {}, only_weighted, fixed=fixed, weight_levels=levels)
    if profile.integer_clip:
        _clip_in_integers(result.model, grid)
    return result, plan


def _moved_from(editor: GraphEditor, tensor: str) -> str:
    """The tensor whose values `tensor` holds, moved by data-movement ops or max-pooled (a max of grid
    values is on the same grid): its scale is the trained one."""
    producer = editor.producer.get(tensor)
    while producer is not None and producer.op_type in DATA_MOVEMENT + ("MaxPool",):
        tensor = producer.input[0]
        producer = editor.producer.get(tensor)
    return tensor


def _trained_params(editor: GraphEditor, tensor: str, grid: TrainedGrid, signed: bool) -> ActivationParams:
    bound = _activation_bound(editor, tensor)
    if bound is not None:
        bits = next((b for value, b in grid.activation_bits.items() if np.isclose(value, bound, rtol=1e-6)), None)
        if bits is None:
            raise UserError(f"activation {tensor} is clipped at {bound:g}, which no trained quantizer has")
        return ActivationParams(np.float32(np.float32(bound) / np.float32(2 ** bits - 1)), 0, signed)
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
    """Relu -> Min(b) -> Q(s, 0)  becomes  Q(s, 0) -> Clip(0, 2^a - 1) (in the Q's integer type); Relu and
    Min go (zero point 0 saturates negatives to 0 in uint8; in int8 the Clip's 0 does it)."""
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
        dtype = numpy_helper.to_array(editor.inits[q.input[2]]).dtype
        if bits == 8 and dtype == np.uint8:
            continue  # the uint8 range is the 8-bit grid: Q alone keeps it
        quantized = q.output[0]
        clipped = editor.fresh(f"{quantized}_clip")
        low = editor.add_initializer(f"{quantized}_clip_min", np.array(0, dtype))
        high = editor.add_initializer(f"{quantized}_clip_max", np.array(2 ** bits - 1, dtype))
        for consumer in list(editor.consumers[quantized]):
            for i, name in enumerate(consumer.input):
                if name == quantized:
                    consumer.input[i] = clipped
        model.graph.node.append(editor.make_node("Clip", [quantized, low, high], [clipped], f"{q.name}_Clip"))
        editor.refresh()
    editor.remove_unused_initializers()
    editor.topological_sort()
