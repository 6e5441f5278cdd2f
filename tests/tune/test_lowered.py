import json

import onnx

import pytest
import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.exporters.profiles import get_profile
from deploy_robust.ingest import LoadedModel
from deploy_robust.tune.lowered import (
    LoweredLayer,
    input_ranges,
    reads_moved_data,
    rounded_layer,
    shipped_layers,
    swapped,
)
from deploy_robust.verify.protocol import attack_twin

CALIB_N = 128


@pytest.fixture(scope="module")
def digits():
    """The digits CNN with a fixed random initialization (conv, conv, linear K=512, linear K=64) and its images."""
    torch.manual_seed(0)
    entry = zoo.get("digits_cnn")
    loaded = LoadedModel(entry.build().eval(), entry.spec, {"file": "digits-random", "sha256": ""})
    return loaded, load_dataset("digits:train").take(CALIB_N)


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_a_lowered_layer_computes_what_its_exported_single_layer_bundle_computes(digits, tmp_path, precision):
    loaded, calib = digits
    module, model = loaded.module, loaded.reference().eval()
    profile = get_profile("ort-cpu", "reduced")
    layers = {name: m for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    images = torch.from_numpy(next(calib.batches(len(calib)))[0])
    ranges = input_ranges(model, layers, images, "mse", signed=False)
    fp32 = export_bundle(loaded, tmp_path / "fp32", ExportOptions("fp32"))
    moved = reads_moved_data(onnx.load(str(fp32.model_path)), profile)
    assert moved == {"0": False, "2": False, "5": True, "7": False}  # the first Linear reads a Flatten
    for name, layer in layers.items():
        plan = tmp_path / f"{name}-{precision}.json"
        plan.write_text(json.dumps({"default": "fp32", "layers": {name: precision}}))
        options = ExportOptions(
            "mixed",
            plan_file=plan,
            weight_rounding="nearest",
            int8_weights="reduced",
            calibration=CalibrationOptions(n=CALIB_N),
        )
        bundle = export_bundle(loaded, tmp_path / f"{name}-{precision}", options, calib=calib)
        with torch.no_grad():
            shipped, reference = attack_twin(bundle)(images), model(images)
            shipped = shipped[0] if isinstance(shipped, (tuple, list)) else shipped
            lowering = rounded_layer(layer, precision, profile, ranges[name], reads_moved_data=moved[name])
            with swapped(module, name, lowering):
                lowered = model(images)
        effect = float((shipped - reference).abs().mean())
        assert effect > 1e-6, f"{name} {precision}: lowering changed nothing to compare"
        # the same grids: what is left are the few inputs that float noise rounds to the neighbouring step
        assert float((shipped - lowered).abs().mean()) <= 0.05 * effect, (name, effect)


def test_the_rounding_passes_gradients_straight_through_and_the_layer_is_restored(digits):
    loaded, calib = digits
    module, model = loaded.module, loaded.reference().eval()
    name, layer = "2", loaded.module.get_submodule("2")
    x = torch.from_numpy(next(calib.batches(8))[0]).requires_grad_(True)
    lowered = rounded_layer(layer, "int4", get_profile("ort-cpu"), (0.0, 1.0))
    with swapped(module, name, lowered):
        model(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0  # rounding did not zero the gradient
    assert module.get_submodule(name) is layer
    with pytest.raises(RuntimeError), swapped(module, name, lowered):
        raise RuntimeError("an attack failed")
    assert module.get_submodule(name) is layer  # restored after an error too


def test_fp16_rounds_weights_and_input_to_half_precision():
    torch.manual_seed(1)
    layer = nn.Linear(16, 4)
    x = torch.randn(3, 16)
    lowered = rounded_layer(layer, "fp16", get_profile("ort-cuda"), None)
    expected = nn.functional.linear(x.half().float(), layer.weight.half().float(), layer.bias)
    assert torch.equal(lowered(x), expected) and not torch.equal(lowered(x), layer(x))


def test_only_convolutions_and_linear_layers_are_lowered():
    with pytest.raises(TypeError):
        rounded_layer(nn.BatchNorm2d(4), "int8", get_profile("ort-cpu"), (0.0, 1.0))
    with pytest.raises(TypeError):
        LoweredLayer(nn.BatchNorm2d(4), torch.zeros(4), None)
    with pytest.raises(ValueError):
        rounded_layer(nn.Linear(4, 2), "int8", get_profile("ort-cpu"), None)


@pytest.mark.slow  # 8 GPTQ exports (~45 s): `make test-all` runs it
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_a_layer_lowered_with_the_uniform_bundles_weights_computes_what_its_gptq_single_layer_bundle_does(
    tmp_path, precision
):
    """GPTQ rounding and BatchNorm folding included: the uniform bundle's weights, read back and unfolded."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip
    for bn in (module[1], module[4]):  # statistics far from the identity, so folding them changes the weights
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.2, 3.0), bn.weight.data.uniform_(0.5, 2.0)
    loaded = LoadedModel(module.eval(), zoo.get("digits_cnn").spec, {"file": "bn-cnn", "sha256": ""})
    calib = load_dataset("digits:train").take(CALIB_N)
    options = dict(int8_weights="reduced", calibration=CalibrationOptions(n=CALIB_N))
    fp32 = export_bundle(loaded, tmp_path / "fp32", ExportOptions("fp32"))
    uniform = export_bundle(loaded, tmp_path / "uniform", ExportOptions(precision, **options), calib=calib)
    shipped = shipped_layers(onnx.load(str(uniform.model_path)), onnx.load(str(fp32.model_path)))
    assert "0" not in shipped and {"3", "7", "9"} <= set(shipped)  # the narrow first conv stays float on ort-cpu
    images = torch.from_numpy(next(calib.batches(CALIB_N))[0])
    model = loaded.reference().eval()
    for name, layer_grid in shipped.items():
        plan = tmp_path / f"{name}.json"
        plan.write_text(json.dumps({"default": "fp32", "layers": {name: precision}}))
        single = export_bundle(
            loaded, tmp_path / f"single-{name}", ExportOptions("mixed", plan_file=plan, **options), calib=calib
        )
        with torch.no_grad():
            shipped_out, reference = attack_twin(single)(images), model(images)
            shipped_out = shipped_out[0] if isinstance(shipped_out, (tuple, list)) else shipped_out
            with swapped(module, name, layer_grid.lowered(module.get_submodule(name))):
                lowered = model(images)
        effect = float((shipped_out - reference).abs().mean())
        assert effect > 1e-6 and float((shipped_out - lowered).abs().mean()) <= 0.05 * effect, (name, effect)
