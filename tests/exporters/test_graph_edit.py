import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy_robust.exporters.graph_edit import GraphEditor, int4_tensor


def _model():
    nodes = [helper.make_node("Relu", ["a"], ["y"], name="second"), helper.make_node("Neg", ["x"], ["a"], name="first")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "unused")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_topological_sort_orders_producers_first_and_unused_initializers_go():
    model = _model()
    editor = GraphEditor(model)
    editor.topological_sort()
    editor.remove_unused_initializers()
    assert [n.name for n in model.graph.node] == ["first", "second"] and not model.graph.initializer
    onnx.checker.check_model(model)


def test_fresh_names_never_collide():
    editor = GraphEditor(_model())
    first = editor.add_initializer("a", np.ones(2, np.float32))
    assert first != "a" and editor.fresh("a") not in (first, "a")


def test_int4_tensors_round_trip():
    values = np.array([-8, -1, 0, 7, 3], np.int8)
    tensor = int4_tensor("w", values)
    assert tensor.data_type == TensorProto.INT4 and np.array_equal(numpy_helper.to_array(tensor), values)
