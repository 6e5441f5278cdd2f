import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from deploy_robust.exporters.preprocess import reduce_mean_to_global_pool


def _model(axes, keepdims=1):
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=axes, keepdims=keepdims, name="mean")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_a_spatial_mean_becomes_a_global_pool_with_the_same_numbers():
    model = _model([2, 3])
    x = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    want = _run(model, x)
    assert reduce_mean_to_global_pool(model) == 1 and model.graph.node[0].op_type == "GlobalAveragePool"
    assert np.allclose(_run(model, x), want, atol=1e-6)


def test_other_means_are_left_alone():
    for model in (_model([1]), _model([2, 3], keepdims=0)):
        assert reduce_mean_to_global_pool(model) == 0 and model.graph.node[0].op_type == "ReduceMean"
