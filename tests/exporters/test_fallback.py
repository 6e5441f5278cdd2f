import numpy as np
from onnx import TensorProto, helper, numpy_helper

from deploy_robust.exporters.fallback import fall_back_until
from deploy_robust.exporters.qdq import QuantizeResult
from deploy_robust.quant.plan import LayerPlan


def _graph(flip: float) -> "onnx.ModelProto":  # noqa: F821
    """logits = x @ W with class 1 pushed down by `flip` (what a badly quantized layer does)."""
    weight = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32) - np.array([[0, flip], [0, flip]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


PLAN = [LayerPlan("a", "a", "Conv", "int8", "int8", ""), LayerPlan("b", "b", "Conv", "int8", "int8", "")]


def _quantize(plan):
    """Layer b's quantization moves predictions (flips class 1 to 0 on most points); a's does not."""
    quantized = {p.name for p in plan if p.precision == "int8"}
    return QuantizeResult(_graph(0.5 if "b" in quantized else 0.0))


def test_the_most_sensitive_layer_is_kept_in_fp32_first_and_the_target_is_met():
    images = np.random.default_rng(0).random((200, 2), dtype=np.float32)
    plan, result, report = fall_back_until(_graph(0.0), PLAN, _quantize, images, 1.0, signed_activations=False)
    assert report["agreement_all_quantized"] < 1.0 and report["agreement"] == 1.0
    assert [k["layer"] for k in report["kept_fp32"]] == ["b"]
    assert [p.precision for p in plan] == ["int8", "fp32"] and "kept FP32 by --min-agreement" in plan[1].reason


def test_a_target_already_met_keeps_every_layer_quantized():
    images = np.random.default_rng(1).random((50, 2), dtype=np.float32)
    plan, _, report = fall_back_until(_graph(0.0), PLAN, _quantize, images, 0.0, signed_activations=True)
    assert report["kept_fp32"] == [] and [p.precision for p in plan] == ["int8", "int8"]
