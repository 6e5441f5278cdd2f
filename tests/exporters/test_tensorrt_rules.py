import numpy as np
from onnx import TensorProto, helper, numpy_helper

from deploy_robust.exporters.tensorrt_rules import check_tensorrt_rules


def _graph(zero_point_dtype=TensorProto.INT8, zero=0, consumer="Conv", opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        helper.make_tensor("z", zero_point_dtype, [], [zero]),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
    ]
    if consumer == "Conv":
        inits.append(numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"))
        nodes.append(helper.make_node("Conv", ["dq", "w"], ["y"], name="conv"))
    else:
        nodes.append(helper.make_node(consumer, ["dq"], ["y"], name="after"))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_a_symmetric_int8_activation_into_a_conv_follows_every_rule():
    assert check_tensorrt_rules(_graph()) == []


def test_each_broken_rule_is_named():
    assert any("UINT8" in p for p in check_tensorrt_rules(_graph(TensorProto.UINT8)))
    assert any("non-zero zero point" in p for p in check_tensorrt_rules(_graph(zero=3)))
    assert any("flows into Softmax" in p for p in check_tensorrt_rules(_graph(consumer="Softmax")))
    assert any("opset 19" in p for p in check_tensorrt_rules(_graph(opset=19)))
