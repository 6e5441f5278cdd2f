import pytest

from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import RuntimeOptions
from deploy_robust.runtimes.openvino_model import compile_config

openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")


def test_only_what_the_user_set_is_passed_to_openvino():
    assert compile_config(RuntimeOptions()) == {}
    assert compile_config(RuntimeOptions(threads=2, streams=1, precision_hint="f32"), profile=True) == {
        "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}


def test_an_unknown_precision_hint_is_one_line():
    with pytest.raises(UserError, match="--precision-hint must be one of default, f32, bf16, f16"):
        compile_config(RuntimeOptions(precision_hint="int3"))


def test_a_graph_openvino_cannot_read_is_one_line(tmp_path):
    from deploy_robust.runtimes.openvino_model import compile_bundle_graph

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="OpenVINO cannot compile"):
        compile_bundle_graph(bad, RuntimeOptions(cache=False))
