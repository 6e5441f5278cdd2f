import pytest

from deploy_robust.errors import UserError
from deploy_robust.exporters import export_float_onnx
from deploy_robust.quant.plan import make_plan
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny


@pytest.fixture(scope="module")
def graph():
    return export_float_onnx(make_tiny(), InputSpec((3, 16, 16), 5)).model


def test_layers_are_named_as_in_torch(graph):
    plan = make_plan(graph, "int8", "tensorrt")
    assert [p.name for p in plan] == ["conv", "conv2", "fc"]
    assert all(p.precision == "int8" for p in plan)


def test_ort_cpu_keeps_a_narrow_image_conv_in_fp32_unless_a_plan_names_it(graph, tmp_path):
    plan = make_plan(graph, "int8", "ort-cpu")
    assert [p.precision for p in plan] == ["fp32", "int8", "int8"] and "narrow image-input conv" in plan[0].reason
    (tmp_path / "p.yaml").write_text("default: int8\nlayers:\n  conv: int8\n")
    assert [p.precision for p in make_plan(graph, "mixed", "ort-cpu", tmp_path / "p.yaml")] == ["int8"] * 3


def test_int4_gemm_with_k_not_divisible_by_the_block_falls_back_and_says_why():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 5)).eval()  # K = 784
    graph = export_float_onnx(model, InputSpec((3, 16, 16), 5)).model
    plan = {p.name: p for p in make_plan(graph, "int4", "ort-cuda")}
    assert plan["0"].precision == "int4"
    assert plan["2"].precision == "int8" and plan["2"].requested == "int4"
    assert "K=784" in plan["2"].reason


def test_int4_gemm_with_k_divisible_is_weight_only(graph):
    plan = {p.name: p for p in make_plan(graph, "int4", "ort-cpu")}
    assert plan["fc"].precision == "int4" and "weight-only" in plan["fc"].reason


def test_mixed_plan_from_yaml_with_globs(graph, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("default: int8\nlayers:\n  conv: fp32\n  'conv*': fp16\n")
    plan = {p.name: p.precision for p in make_plan(graph, "mixed", "ort-cpu", path)}
    assert plan == {"conv": "fp32", "conv2": "fp16", "fc": "int8"}


def test_plan_errors(graph, tmp_path):
    with pytest.raises(UserError, match="needs --plan"):
        make_plan(graph, "mixed", "ort-cpu")
    bad = tmp_path / "plan.json"
    bad.write_text('{"layers": {"nope": "int8"}}')
    with pytest.raises(UserError, match="layers the model does not have: nope"):
        make_plan(graph, "mixed", "ort-cpu", bad)
    bad.write_text('{"layers": {"conv": "int3"}}')
    with pytest.raises(UserError, match="'int3' is not one of"):
        make_plan(graph, "mixed", "ort-cpu", bad)
