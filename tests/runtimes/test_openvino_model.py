import pytest

from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import RuntimeOptions
from deploy_robust.runtimes.openvino_model import compile_config

openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")


def test_only_what_the_user_set_is_passed_to_openvino():
    assert compile_config(RuntimeOptions()) == {}
    assert compile_config(RuntimeOptions(threads=2, streams=1, precision_hint="f32"), profile=True) == {
        "INFERENCE_NUM_THREADS": 2,
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERF_COUNT": True,
    }


def test_an_unknown_precision_hint_is_one_line():
    with pytest.raises(UserError, match="--precision-hint must be one of default, f32, bf16, f16"):
        compile_config(RuntimeOptions(precision_hint="int3"))


def test_a_graph_openvino_cannot_read_is_one_line(tmp_path):
    from deploy_robust.runtimes.openvino_model import compile_bundle_graph

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(UserError, match="OpenVINO cannot compile"):
        compile_bundle_graph(bad, RuntimeOptions(cache=False))


def test_int4_conv_weights_reach_openvino_widened_to_int8_once(tmp_path, monkeypatch):
    import onnx

    from deploy_robust.data import load_dataset
    from deploy_robust.export import ExportOptions, export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.runtimes.openvino_model import bundle_graph
    from deploy_robust.spec import InputSpec
    from tests.conftest import make_tiny

    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(tmp_path / "home"))
    calib = load_dataset("digits:train")
    loaded = LoadedModel(make_tiny(channels=1), InputSpec((1, 8, 8), 5), {"file": "t"})
    int4 = export_bundle(loaded, tmp_path / "int4", ExportOptions("int4"), calib=calib)
    fp32 = export_bundle(loaded, tmp_path / "fp32")
    assert bundle_graph(fp32.model_path) == fp32.model_path.read_bytes()  # nothing to widen: read as it is
    copy = bundle_graph(int4.model_path)
    assert bundle_graph(int4.model_path) == copy and not (tmp_path / "home" / "openvino-widened").exists()

    def int4_count(graph):
        graph = onnx.load_from_string(graph) if isinstance(graph, bytes) else onnx.load(str(graph))
        return sum(i.data_type == onnx.TensorProto.INT4 for i in graph.graph.initializer)

    # conv weights became INT8 and the small weight-only INT4 head float: no INT4 left for OpenVINO to dequantize
    assert int4_count(copy) == 0 < int4_count(int4.model_path)
