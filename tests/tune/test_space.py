import json

import onnx
import pytest
import torch

from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.tune.space import describe, layer_macs, parse_pins, plan_file, plan_key, search_layers


@pytest.fixture(scope="module")
def graph(digits_loaded, tmp_path_factory):
    bundle = export_bundle(digits_loaded, tmp_path_factory.mktemp("space") / "fp32")
    return onnx.load(str(bundle.model_path))


def test_layers_carry_their_names_macs_and_the_targets_precisions(graph):
    layers = search_layers(graph, "ort-cpu")
    assert [layer.op for layer in layers][-1] == "Gemm" and all(layer.macs > 0 for layer in layers)
    assert all(layer.allowed == ("fp32", "int8", "int4") for layer in layers)
    assert search_layers(graph, "tensorrt")[0].allowed == ("fp32", "fp16", "int8")
    assert search_layers(graph, "ort-cpu", ("int8",))[0].allowed == ("fp32", "int8")


def test_macs_per_layer_are_the_torch_models_and_read_the_same_through_int8_weights(graph, digits_loaded, tmp_path):
    expected = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            expected.append(output[0].numel() * module.weight[0].numel())
        elif isinstance(module, torch.nn.Linear):
            expected.append(module.weight.numel())

    hooks = [m.register_forward_hook(count) for m in digits_loaded.module.modules()]
    with torch.no_grad():
        digits_loaded.module(torch.zeros(1, *digits_loaded.spec.shape))
    for hook in hooks:
        hook.remove()
    assert sorted(layer_macs(graph).values()) == sorted(expected)
    options = ExportOptions("int8", weight_rounding="nearest")
    int8 = export_bundle(digits_loaded, tmp_path / "int8", options, calib=load_dataset("digits:train").take(64))
    assert layer_macs(onnx.load(str(int8.model_path))) == layer_macs(graph)  # weights behind DequantizeLinear


def test_bad_targets_and_spaces_are_one_clear_error(graph):
    with pytest.raises(UserError, match="--target must be one of"):
        search_layers(graph, "jetson")
    with pytest.raises(UserError, match="cannot run int4"):
        search_layers(graph, "tensorrt", ("int4",))


def test_a_plan_names_every_layer_and_describes_itself(graph):
    layers = search_layers(graph, "ort-cpu")
    plan = ("fp32",) + ("int8",) * (len(layers) - 1)
    doc = json.loads(plan_file(layers, plan))
    assert doc["default"] == "fp32" and list(doc["layers"].values()) == list(plan)
    assert (
        describe(layers, plan) == f"int8 but {layers[0].name} fp32"
        and describe(layers, ("int8",) * len(layers)) == "int8"
    )
    assert plan_key(plan) != plan_key(("int8",) * len(layers)) and len(plan_key(plan)) == 12


def test_pins_fix_a_layers_precision_and_unknown_names_are_one_clear_error(graph):
    pins = parse_pins(["0=fp32, 7=int8"], "ort-cpu")
    assert pins == (("0", "fp32"), ("7", "int8"))
    layers = {layer.name: layer.allowed for layer in search_layers(graph, "ort-cpu", pins=pins)}
    assert layers["0"] == ("fp32",) and layers["7"] == ("int8",) and layers["2"] == ("fp32", "int8", "int4")
    with pytest.raises(UserError, match="layers the model does not have: conv9 .*0, 2, 5, 7"):
        search_layers(graph, "ort-cpu", pins=(("conv9", "fp32"),))
    with pytest.raises(UserError, match="cannot run int4"):
        parse_pins(["0=int4"], "tensorrt")
    with pytest.raises(UserError, match="twice"):
        parse_pins(["0=fp32", "0=int8"], "ort-cpu")
    with pytest.raises(UserError, match="LAYER=PRECISION"):
        parse_pins(["fp32"], "ort-cpu")


def test_a_gdws_option_names_the_rewritten_layers_two_convolutions_in_the_plan(graph):
    from deploy_robust.tune.space import gdws_choices, gdws_option, parse_option, with_gdws_options

    option = gdws_option(0.5, "int8")
    assert option == "gdws0.5-int8" and parse_option(option) == (0.5, "int8") and parse_option("int4") == (None, "int4")
    pins = (("7", "fp32"),)
    rewritten = {option: {"2", "7"}, gdws_option(0.25, "fp32"): {"2"}, gdws_option(0.5, "int4"): {"2"}}
    layers = with_gdws_options(search_layers(graph, "ort-cpu", ("int8",), pins=pins), rewritten)
    # only the layers the rewrite rewrites, at precisions they may take: a pinned layer keeps its pin alone
    assert [layer.allowed for layer in layers] == [
        ("fp32", "int8"),
        ("fp32", "int8", "gdws0.5-int8", "gdws0.25-fp32"),
        ("fp32", "int8"),
        ("fp32",),
    ]
    plan = ("int8", "gdws0.5-int8", "fp32", "fp32")
    doc = json.loads(plan_file(layers, plan))
    assert doc["layers"] == {"0": "int8", "2.depthwise": "int8", "2.pointwise": "int8", "5": "fp32", "7": "fp32"}
    assert gdws_choices(layers, plan) == {"2": 0.5} and describe(layers, plan) == "fp32 but 0 int8, 2 gdws0.5-int8"
