import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploy_robust.errors import UserError
from deploy_robust.runtimes.onnxruntime_session import load_session, optimization_level


def _relu_graph() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_signed_activation_graphs_run_unfused_on_the_cpu_only():
    assert optimization_level(quantized=True, signed_activations=True) == "basic"
    assert optimization_level(quantized=True, signed_activations=False) == "all"
    assert optimization_level(quantized=False, signed_activations=True) == "all"
    assert optimization_level(quantized=True, signed_activations=True, device="cuda") == "all"


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_a_session_loads_from_bytes_or_a_path_at_every_level(tmp_path, level):
    data = _relu_graph()
    (tmp_path / "m.onnx").write_bytes(data)
    for model in (data, tmp_path / "m.onnx"):
        session = load_session(model, providers=["CPUExecutionProvider"], threads=1, optimization=level)
        out = session.run(None, {"x": np.array([[-1, 0, 2]], np.float32)})[0]
        assert out.tolist() == [[0, 0, 2]]


def test_an_unloadable_graph_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(UserError, match="ONNX Runtime cannot load .*bad.onnx"):
        load_session(bad, providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError):
        load_session(_relu_graph(), providers=["CPUExecutionProvider"], optimization="max")
    onnx.checker.check_model(onnx.load_from_string(_relu_graph()))
