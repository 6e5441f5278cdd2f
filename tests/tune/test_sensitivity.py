import onnx
import pytest

from deploy_robust.data import load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.tune.measure import margin_drop, sensitivity_metrics, twin_margins
from deploy_robust.tune.sensitivity import InMemoryLowering
from deploy_robust.verify import ThreatModel

THREAT = ThreatModel("linf", 0.1)


@pytest.fixture(scope="module")
def lowering(digits_loaded, tmp_path_factory):
    fp32 = export_bundle(digits_loaded, tmp_path_factory.mktemp("sens") / "fp32", ExportOptions("fp32"))
    calib = load_dataset("digits:train")
    return fp32, InMemoryLowering(digits_loaded, onnx.load(str(fp32.model_path)), "ort-cpu", calib), calib.take(48)


def test_the_fp32_margin_in_memory_is_the_fp32_bundles_twin_margin(lowering):
    fp32, lowered, sample = lowering
    in_memory = lowered.margins(None, "fp32", sample, THREAT, "robust")
    assert len(in_memory) == len(sample)
    assert in_memory == pytest.approx(twin_margins(fp32, sample, THREAT, "robust"), abs=1e-4)
    assert lowered.margins("5", "fp32", sample, THREAT, "robust") == in_memory  # fp32 lowers nothing
    clean = lowered.margins(None, "fp32", sample, THREAT, "clean")
    assert clean == pytest.approx(twin_margins(fp32, sample, THREAT, "clean"), abs=1e-4)
    assert sum(clean) > sum(in_memory)  # the attack lowers the margins


def test_four_bit_layers_cost_more_margin_than_eight_bit_ones_and_the_model_is_left_as_it_was(lowering):
    _, lowered, sample = lowering
    base = lowered.margins(None, "fp32", sample, THREAT, "robust")
    drops = {
        (name, p): margin_drop(base, lowered.margins(name, p, sample, THREAT, "robust"))
        for name in ("0", "2", "5", "7")
        for p in ("int8", "int4")
    }
    assert sum(v for (_, p), v in drops.items() if p == "int4") > sum(v for (_, p), v in drops.items() if p == "int8")
    assert max(drops.values()) > 0.01  # lowering a layer does move the margin
    assert lowered.margins(None, "fp32", sample, THREAT, "robust") == base  # every layer was put back


def test_only_the_torch_models_own_conv_and_linear_layers_are_lowerable(lowering):
    _, lowered, _ = lowering
    assert [lowered.lowerable(name) for name in ("0", "2", "5", "7")] == [True] * 4
    assert not lowered.lowerable("1") and not lowered.lowerable("layer9.conv")  # a ReLU; a name it does not have


def test_layers_a_uniform_bundle_lowers_take_its_weights_the_rest_are_rounded_here(digits_loaded, lowering, tmp_path):
    fp32, _, sample = lowering
    calib = load_dataset("digits:train")
    int8 = export_bundle(digits_loaded, tmp_path / "int8", ExportOptions("int8"), calib=calib)
    graph = onnx.load(str(fp32.model_path))
    with_grids = InMemoryLowering(
        digits_loaded, graph, "ort-cpu", calib, uniform={"int8": ("k", onnx.load(str(int8.model_path)))}
    )
    assert [with_grids.grid(name, "int8") for name in ("0", "2", "5", "7")] == ["nearest"] + ["shipped-k"] * 3
    assert with_grids.grid("2", "int4") == "nearest"  # no uniform INT4 bundle given
    base = with_grids.margins(None, "fp32", sample, THREAT, "robust")
    assert with_grids.margins("5", "int8", sample, THREAT, "robust") != base


def test_a_gdws_option_in_memory_computes_what_the_bundle_with_that_layer_rewritten_computes(
    digits_loaded, lowering, tmp_path
):
    import json

    from deploy_robust.transforms.gdws.network import chosen_layers, plan_gdws
    from deploy_robust.transforms.gdws.rewrite import apply_plan

    fp32, lowered, sample = lowering
    shape = digits_loaded.spec.shape
    whole = plan_gdws(digits_loaded.module, shape, budget=0.5)
    assert [layer.name for layer in whole.replaced] == ["2"]  # the first conv is skipped, 5 and 7 are Linear
    allocation = whole.replaced[0].allocation
    rewritten = apply_plan(digits_loaded, chosen_layers(digits_loaded.module, shape, {"2": allocation}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"default": "fp32", "layers": {"2.depthwise": "int8", "2.pointwise": "int8"}}))
    exported = {
        "fp32": export_bundle(rewritten, tmp_path / "fp32", ExportOptions("fp32")),
        "int8": export_bundle(
            rewritten, tmp_path / "int8", ExportOptions("mixed", plan_file=plan), calib=load_dataset("digits:train")
        ),  # fmt: skip
    }
    assert {layer["name"]: layer["precision"] for layer in exported["int8"].manifest.document["precision"]["layers"]}[
        "2.pointwise"
    ] == "int8"
    base = lowered.margins(None, "fp32", sample, THREAT, "robust")
    margins = {p: lowered.margins("2", p, sample, THREAT, "robust", gdws_allocation=allocation) for p in exported}
    shipped = {p: twin_margins(bundle, sample, THREAT, "robust") for p, bundle in exported.items()}
    assert margins["fp32"] == pytest.approx(shipped["fp32"], abs=1e-4) and margin_drop(base, margins["fp32"]) > 0.1
    # at INT8 the export rounds with GPTQ where this rounds to nearest: within a tenth of the option's whole effect
    assert abs(margin_drop(base, margins["int8"]) - margin_drop(base, shipped["int8"])) <= 0.1 * margin_drop(
        base, shipped["int8"]
    )
    assert lowered.margins(None, "fp32", sample, THREAT, "robust") == base  # the layer was put back


def test_the_margin_drop_is_per_point_so_gains_elsewhere_do_not_hide_a_loss():
    base, lowered = [0.2, 3.0, -0.5], [-0.1, 3.3, -0.5]  # the borderline point crosses; the mean stays put
    assert sum(base) == pytest.approx(sum(lowered))
    assert margin_drop(base, lowered) == pytest.approx(0.1)  # its 0.3, over three points
    assert margin_drop(base, base) == 0
    with pytest.raises(ValueError):
        margin_drop(base, lowered[:2])  # the same points or nothing


def test_a_robust_driven_tune_with_a_clean_budget_measures_both_margins():
    assert sensitivity_metrics("robust", 0.01) == ("robust", "clean")
    assert sensitivity_metrics("robust", 1.0) == ("robust",)  # a clean budget of 100 pt binds nothing
    assert sensitivity_metrics("clean", 0.01) == ("clean",)


def test_an_options_margins_under_each_metric_come_from_one_lowering(digits_loaded, lowering, monkeypatch):
    from deploy_robust.transforms.gdws.network import plan_gdws

    fp32, lowered, sample = lowering
    allocation = plan_gdws(digits_loaded.module, digits_loaded.spec.shape, budget=0.5).replaced[0].allocation
    one_by_one = {
        m: lowered.margins("2", "int8", sample, THREAT, m, gdws_allocation=allocation) for m in ("robust", "clean")
    }
    made, gdws_layer = [], InMemoryLowering.gdws_layer

    def counted(self, *args):
        made.append(args)
        return gdws_layer(self, *args)

    monkeypatch.setattr(InMemoryLowering, "gdws_layer", counted)
    each = lowered.margins_each("2", "int8", sample, THREAT, ("robust", "clean"), gdws_allocation=allocation)
    # the rewrite (and the calibration of its inputs' ranges) made once for both, with the same margins
    assert len(made) == 1 and each == one_by_one and each["robust"] != each["clean"]
    assert lowered.margins(None, "fp32", sample, THREAT, "clean") != each["clean"]  # the layer was put back
