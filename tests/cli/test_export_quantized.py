import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import make_tiny


@pytest.fixture
def model_args(tiny_checkpoint, tiny_arch_file):
    return [tiny_checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16"]


def test_int8_export_writes_calibration_and_a_reusable_cache(cli, tmp_path, model_args, image_npz):
    code, _, err = cli(
        "export",
        *model_args,
        "--precision",
        "int8",
        "--calib",
        image_npz,
        "--calib-method",
        "entropy",
        "-o",
        tmp_path / "a",
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["calibration"]["method"] == "entropy" and manifest["calibration"]["num_images"] == 40
    calibration = json.loads((tmp_path / "a" / "calibration.json").read_text())
    assert calibration["tensors"] and calibration["activations"]
    assert manifest["precision"]["weight_rounding"] == "gptq"
    code, out, _ = cli("info", tmp_path / "a")
    assert code == 0 and "entropy ranges over 40 images" in out and "weights rounded: gptq" in out
    # The cache holds the ranges; GPTQ rounding also reads the images: cache + the same images reproduce
    # the bundle byte for byte, without recalibrating.
    code, _, err = cli(
        "export",
        *model_args,
        "--precision",
        "int8",
        "--calib-cache",
        tmp_path / "a",
        "--calib",
        image_npz,
        "-o",
        tmp_path / "b",
    )
    assert code == 0, err
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()
    # The cache alone: same ranges, weights rounded to nearest, and the command says so.
    code, out, err = cli(
        "export", *model_args, "--precision", "int8", "--calib-cache", tmp_path / "a", "-o", tmp_path / "c"
    )
    assert code == 0, err
    assert "rounded to nearest (gptq needs --calib images" in out
    manifest_c = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest_c["precision"]["weight_rounding"].startswith("nearest")
    with_nearest = ("--precision", "int8", "--calib-method", "entropy", "--weight-rounding", "nearest")
    assert cli("export", *model_args, *with_nearest, "--calib", image_npz, "-o", tmp_path / "d")[0] == 0
    assert (tmp_path / "c" / "model.onnx").read_bytes() == (tmp_path / "d" / "model.onnx").read_bytes()


def test_cache_from_another_model_is_refused(cli, tmp_path, model_args, image_npz, tiny_arch_file):
    assert cli("export", *model_args, "--precision", "int8", "--calib", image_npz, "-o", tmp_path / "a")[0] == 0
    other = tmp_path / "other.pt"
    torch.save(make_tiny(seed=5).state_dict(), other)
    code, _, err = cli(
        "export",
        other,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--precision",
        "int8",
        "--calib-cache",
        tmp_path / "a" / "calibration.json",
        "-o",
        tmp_path / "c",
    )
    assert code == 2 and "different model" in err and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            dict(x=np.full((8, 3, 16, 16), np.inf, np.float32), y=np.zeros(8, np.int64)),
            "--calib: .*image 0 contains NaN or Inf",
        ),
        (dict(x=np.zeros((0, 3, 16, 16), np.uint8), y=np.zeros(0, np.int64)), "--calib: .*empty"),
        (dict(x=np.zeros((8, 1, 28, 28), np.uint8), y=np.zeros(8, np.int64)), "--calib: .*the model takes 3x16x16"),
    ],
)
def test_bad_calibration_data(cli, tmp_path, model_args, arrays, message):
    import re

    data = tmp_path / "calib.npz"
    np.savez(data, **arrays)
    code, _, err = cli("export", *model_args, "--precision", "int8", "--calib", data, "-o", tmp_path / "q")
    assert code == 2 and re.search(message, err) and not (tmp_path / "q").exists()


def test_quantized_export_needs_calibration(cli, tmp_path, model_args):
    code, _, err = cli("export", *model_args, "--precision", "int4", "-o", tmp_path / "q")
    assert code == 2 and "needs calibration data" in err


def test_a_layer_the_precision_cannot_handle_falls_back_and_is_recorded(cli, tmp_path, image_npz):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 5)).eval()  # K = 784
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(model), path)
    code, out, err = cli(
        "export", path, "--input-shape", "3,16,16", "--precision", "int4", "--calib", image_npz, "-o", tmp_path / "q"
    )
    assert code == 0, err
    assert "layer 3 stays int8 (asked int4)" in out
    layers = {
        layer["name"]: layer
        for layer in json.loads((tmp_path / "q" / "manifest.json").read_text())["precision"]["layers"]
    }
    assert layers["3"]["precision"] == "int8" and "K=784" in layers["3"]["reason"]
    assert layers["0"]["precision"] == "fp32" and "narrow image-input conv" in layers["0"]["reason"]


def test_mixed_plan_from_the_command_line(cli, tmp_path, model_args, image_npz):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"default": "int8", "layers": {"fc": "fp32"}}))
    code, _, err = cli(
        "export",
        *model_args,
        "--precision",
        "mixed",
        "--plan",
        plan,
        "--calib",
        image_npz,
        "-o",
        tmp_path / "m",
        "--json",
    )
    assert code == 0, err
    layers = {
        layer["name"]: layer["precision"]
        for layer in json.loads((tmp_path / "m" / "manifest.json").read_text())["precision"]["layers"]
    }
    assert layers == {"conv": "fp32", "conv2": "int8", "fc": "fp32"}  # conv: ort-cpu's narrow image-input rule


def test_a_fake_quantized_model_exports_its_trained_grid(tmp_path):
    import torch.ao.quantization as tq

    from deploy_robust.export import ExportOptions, export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.quant.twin import twin_module
    from deploy_robust.runtimes import create_runner
    from deploy_robust.spec import InputSpec

    class QATNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = tq.FakeQuantize(
                observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8
            )
            self.conv = nn.Conv2d(3, 4, 3)
            self.weight_fq = tq.FakeQuantize(
                observer=tq.MovingAveragePerChannelMinMaxObserver,
                quant_min=-128,
                quant_max=127,
                dtype=torch.qint8,
                qscheme=torch.per_channel_symmetric,
            )
            self.fc = nn.Linear(4 * 14 * 14, 5)

        def forward(self, x):
            h = torch.nn.functional.conv2d(self.act(x), self.weight_fq(self.conv.weight), self.conv.bias)
            return self.fc(torch.flatten(torch.relu(h), 1))

    torch.manual_seed(0)
    model = QATNet().train()
    for _ in range(3):
        model(torch.rand(16, 3, 16, 16))
    model.eval()
    loaded = LoadedModel(
        model,
        InputSpec((3, 16, 16), 5),
        {"file": "qat", "format": "test", "sha256": "", "arch": None, "layer_dtypes": {}},
        layers=[{"name": "conv", "type": "Conv2d", "source_dtype": "float32"}],
    )
    bundle = export_bundle(loaded, tmp_path / "q", ExportOptions("int8"))
    assert bundle.manifest.precision.layers[0]["precision"] == "trained grid"
    assert not (tmp_path / "q" / "calibration.json").exists()
    x = np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32)
    engine = create_runner("ort-cpu", bundle).infer(x)
    with torch.no_grad():
        trained = model(torch.from_numpy(x)).numpy()
        twin = twin_module(bundle.model_path)(torch.from_numpy(x)).numpy()
    assert np.abs(engine - trained).max() < 1e-4 and np.abs(twin - trained).max() < 1e-4


def test_min_agreement_keeps_the_most_sensitive_layers_in_fp32(cli, tmp_path, tiny_arch_file, image_npz):
    # A head whose classes 0 and 1 nearly tie on every image: rounding the head's weights flips many
    # predictions, rounding the convs hardly any. Calibration on the first 10 images; agreement on those
    # (the other 30 are fewer than the 200 held-out images export asks for, and the manifest says so).
    model = make_tiny()
    with torch.no_grad():
        model.fc.weight[1] = model.fc.weight[0] + 1e-3 * torch.randn_like(model.fc.weight[0])
        model.fc.bias[:2] = 10.0
    checkpoint = tmp_path / "tied.pt"
    torch.save(model.state_dict(), checkpoint)
    code, out, err = cli(
        "export",
        checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--precision",
        "int4",
        "--calib",
        image_npz,
        "--calib-n",
        "10",
        "--min-agreement",
        "1.0",
        "-o",
        tmp_path / "q",
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    fallback = manifest["precision"]["fallback"]
    assert fallback["target"] == 1.0 and fallback["images"] == 10 and fallback["held_out"] is False
    assert fallback["agreement_all_quantized"] < 1.0 and fallback["agreement"] == 1.0
    kept = [k["layer"] for k in fallback["kept_fp32"]]
    assert kept[0] == "fc"  # the most sensitive layer goes first
    layers = {layer["name"]: layer for layer in manifest["precision"]["layers"]}
    assert layers["fc"]["precision"] == "fp32" and "--min-agreement" in layers["fc"]["reason"]
    assert layers["conv"]["precision"] == "fp32"  # kept FP32 by ort-cpu's narrow image-input rule from the start
    assert layers["conv2"]["precision"] == ("fp32" if "conv2" in kept else "int4")
    alone = [k["agreement_when_kept_alone"] for k in fallback["kept_fp32"]]
    assert alone == sorted(alone, reverse=True)
    assert "layer fc stays fp32 (asked int4)" in out and "with 1 layer(s) kept FP32" in out
    model_args = [checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16"]
    # a target the quantized graph already meets keeps everything quantized
    code, _, err = cli(
        "export",
        *model_args,
        "--precision",
        "int8",
        "--calib",
        image_npz,
        "--min-agreement",
        "0.05",
        "-o",
        tmp_path / "r",
    )
    assert code == 0, err
    fallback = json.loads((tmp_path / "r" / "manifest.json").read_text())["precision"]["fallback"]
    assert fallback["kept_fp32"] == [] and fallback["agreement"] == fallback["agreement_all_quantized"] >= 0.05


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--precision", "int8", "--min-agreement", "1.5"), r"--min-agreement: must be a fraction in \[0, 1\]"),
        (("--precision", "int8", "--min-agreement", "0"), r"--min-agreement must be in \(0, 1\]"),
        (("--precision", "fp32", "--min-agreement", "0.99"), "goes with a calibrated --precision"),
    ],
)
def test_min_agreement_bad_input(cli, tmp_path, model_args, image_npz, extra, message):
    import re

    code, _, err = cli("export", *model_args, *extra, "--calib", image_npz, "-o", tmp_path / "q")
    assert code == 2 and re.search(message, err) and not (tmp_path / "q").exists()


def test_min_agreement_needs_images(cli, tmp_path, model_args, image_npz):
    assert cli("export", *model_args, "--precision", "int8", "--calib", image_npz, "-o", tmp_path / "a")[0] == 0
    code, _, err = cli(
        "export",
        *model_args,
        "--precision",
        "int8",
        "--calib-cache",
        tmp_path / "a",
        "--min-agreement",
        "0.99",
        "-o",
        tmp_path / "b",
    )
    assert code == 2 and "pass --calib DATA" in err and not (tmp_path / "b").exists()


def test_a_static_batch_graph_calibrates_exports_and_evaluates(cli, tmp_path, digits_checkpoint):
    code, out, err = cli(
        "export",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--static-batch",
        "1",
        "--precision",
        "int8",
        "--calib",
        "digits:train",
        "-o",
        tmp_path / "b1",
    )
    assert code == 0, err
    assert "input 1x1x8x8" in out  # a fixed batch is not called N
    code, out, err = cli("eval", tmp_path / "b1", "--data", "digits:test", "--n", "50", "--json")
    assert code == 0 and json.loads(out)["accuracy"] > 0.8
