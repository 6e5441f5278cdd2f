"""GDWS end to end: checkpoint round trip, FP32 fidelity of the bundle, INT8 on 8-bit gathers, CLI errors."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_robust.errors import UserError

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner
from deploy_robust.transforms.gdws import GDWSConv2d


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("digits:test")


def test_gdws_checkpoint_reloads_to_the_same_model(cli, digits_checkpoint, tmp_path, digits_test):
    out = tmp_path / "digits_gdws.pt"
    code, stdout, _ = cli(
        "gdws",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--budget",
        "0.5",
        "--channel-multiple",
        "1",
        "--test",
        "digits:test",
        "-o",
        out,
        "--json",
    )
    assert code == 0
    report = json.loads(stdout)
    (layer,) = [entry for entry in report["plan"]["layers"] if entry["replaced"]]
    assert layer["name"] == "2" and layer["mac_ratio"] >= 2.0
    assert report["clean_accuracy"]["gdws"] > 0.8 * report["clean_accuracy"]["original"]
    loaded = load_model(out)
    assert isinstance(loaded.module[2], GDWSConv2d) and loaded.module[2].width == layer["G"]
    assert loaded.transforms["gdws"]["layers"][1]["allocation"] == layer["allocation"]
    accuracy = evaluate(create_runner("torch", module=loaded.reference()), digits_test).accuracy
    assert accuracy == pytest.approx(report["clean_accuracy"]["gdws"])
    code, stdout, _ = cli("info", out)
    assert code == 0 and "GDWS (budget 0.5): 1 of 2 convolutions rewritten" in stdout
    code, _, err = cli("gdws", out, "--budget", "0.5", "-o", tmp_path / "twice.pt")
    assert code == 2 and "already GDWS-rewritten" in err and not (tmp_path / "twice.pt").exists()


def test_fp32_bundle_matches_the_gdws_model_and_int8_gathers_bytes(cli, digits_checkpoint, tmp_path, digits_test):
    gdws_pt = tmp_path / "g.pt"
    assert cli("gdws", digits_checkpoint, "--arch", "digits_cnn", "--budget", "0.4", "-o", gdws_pt)[0] == 0
    loaded = load_model(gdws_pt)
    assert cli("export", gdws_pt, "-o", tmp_path / "fp32")[0] == 0
    bundle = open_bundle(tmp_path / "fp32")
    assert bundle.manifest.transforms["gdws"]["budget"] == 0.4
    assert {"2.depthwise", "2.pointwise"} <= {layer["name"] for layer in bundle.manifest.precision.layers}
    ops = [n.op_type for n in onnx.load(bundle.model_path).graph.node]
    assert ops.count("Gather") == 1 and ops.count("Conv") == 3
    engine = evaluate(create_runner("ort-cpu", bundle), digits_test)
    reference = evaluate(create_runner("torch", module=loaded.reference()), digits_test)
    agreement = compare_logits(engine.logits, reference.logits)
    assert agreement.max_abs_diff <= 1e-4 and agreement.top1_agreement == 1.0

    code, _, err = cli("export", gdws_pt, "--precision", "int8", "--calib", "digits:train", "-o", tmp_path / "int8")
    assert code == 0, err
    int8 = open_bundle(tmp_path / "int8")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8.model_path), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(tmp_path / "optimized.onnx").graph
    producers = {o: n.op_type for n in optimized.node for o in n.output}
    gathers = [n for n in optimized.node if n.op_type == "Gather"]
    # the gather reads the 8-bit output of the stem conv: no float round trip around it
    assert gathers and all(producers.get(n.input[0]) != "DequantizeLinear" for n in gathers)
    assert sum(n.op_type == "QLinearConv" for n in optimized.node) == 2  # the 1-channel stem stays FP32 on ort-cpu
    quantized = evaluate(create_runner("ort-cpu", int8), digits_test)
    assert compare_logits(quantized.logits, reference.logits).top1_agreement >= 0.95


def test_export_gdws_options_give_the_same_graph_as_gdws_then_export(cli, digits_checkpoint, tmp_path):
    assert cli("gdws", digits_checkpoint, "--arch", "digits_cnn", "--budget", "0.5", "-o", tmp_path / "g.pt")[0] == 0
    assert cli("export", tmp_path / "g.pt", "-o", tmp_path / "two_steps")[0] == 0
    code, _, err = cli(
        "export", digits_checkpoint, "--arch", "digits_cnn", "--gdws-budget", "0.5", "-o", tmp_path / "one"
    )
    assert code == 0 and "fewer MACs" in err
    two, one = open_bundle(tmp_path / "two_steps"), open_bundle(tmp_path / "one")
    assert two.manifest.model.sha256 == one.manifest.model.sha256
    assert one.manifest.transforms["gdws"]["layers"] == two.manifest.transforms["gdws"]["layers"]


def test_alpha_cache_is_written_then_reused(cli, digits_checkpoint, tmp_path):
    alphas = tmp_path / "alphas.json"
    args = ["gdws", digits_checkpoint, "--arch", "digits_cnn", "--budget", "0.5", "--alphas", alphas, "--json"]
    code, stdout, _ = cli(*args, "--alpha-data", "digits:train", "--alpha-eps", "0.1", "--alpha-n", "16")
    assert code == 0 and alphas.exists()
    first = json.loads(stdout)["plan"]
    assert first["alphas"]["eps"] == 0.1 and first["alphas"]["n"] == 16
    code, stdout, _ = cli(*args)  # no --alpha-data: the cache is enough
    assert code == 0 and json.loads(stdout)["plan"]["layers"] == first["layers"]


def test_bad_gdws_input_exits_2(cli, digits_checkpoint, tmp_path):
    base = ["gdws", digits_checkpoint, "--arch", "digits_cnn"]
    for usage in ([], ["--beta", "1", "--budget", "0.5"]):  # exactly one of --beta and --budget
        code, _, err = cli(*base, *usage)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--beta" in err
    code, _, err = cli(*base, "--budget", "0.5", "--alpha-data", "digits:train")
    assert code == 2 and "--alpha-eps" in err
    code, _, err = cli(*base, "--budget", "2")
    assert code == 2 and "(0, 1]" in err
    code, _, err = cli(*base, "--budget", "0.5", "--alphas", tmp_path / "missing.json")
    assert code == 2 and "does not exist" in err
    assert cli(*base, "--budget", "0.5", "-o", tmp_path / "g.pt")[0] == 0
    assert cli("export", tmp_path / "g.pt", "-o", tmp_path / "b")[0] == 0
    code, _, err = cli("gdws", tmp_path / "b" / "model.onnx", "--budget", "0.5")  # an ONNX graph has no nn.Conv2d
    assert code == 2 and "no convolution" in err
    assert not list(tmp_path.glob(".g.pt.*"))  # no temporary file left behind


@pytest.mark.parametrize(
    "precision,target",
    [
        ("fp16", "ort-cpu"),
        ("int8", "ort-cpu"),
        ("int4", "ort-cpu"),
        ("int8", "ort-cuda"),
        ("int8", "tensorrt"),
        ("int4", "tensorrt"),
    ],
)
def test_gdws_exports_to_every_precision_and_target(precision, target, tmp_path):
    from deploy_robust.data import Dataset
    from deploy_robust.export import ExportOptions, export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.quant.twin import twin_module
    from deploy_robust.spec import InputSpec
    from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
    from tests.conftest import make_tiny

    # TinyNet: the GDWS conv2 reads the stem's output, which also feeds the residual Add
    loaded = LoadedModel(make_tiny(), InputSpec((3, 8, 8), 5), {"file": "tiny", "arch": None}, layers=[])
    rewritten, plan = rewrite_model(loaded, GDWSRequest(budget=0.6, include_first=False, channel_multiple=1))
    assert [layer.name for layer in plan.replaced] == ["conv2"]
    rng = np.random.default_rng(0)
    images = Dataset(rng.integers(0, 256, (64, 3, 8, 8), dtype=np.uint8), rng.integers(0, 5, 64), "random", 255.0)
    bundle = export_bundle(rewritten, tmp_path / "b", ExportOptions(precision, target), calib=images)
    graph = onnx.load(bundle.model_path).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    gather = next(n for n in graph.node if n.op_type == "Gather")
    if precision != "fp16":
        # the G-channel intermediate (the depthwise output) was calibrated and is quantized for the pointwise conv
        nodes = {o: n for n in graph.node for o in n.output}
        pointwise = next(n for n in graph.node if n.op_type == "Conv" and "pointwise" in n.input[1])
        intermediate = nodes[nodes[pointwise.input[0]].input[0]].input[0]  # DQ <- Q <- tensor
        assert producers[intermediate] == "Conv"  # the depthwise conv's output
        assert intermediate in json.loads((bundle.path / "calibration.json").read_text())["activations"]
        quantized_inputs = [
            n for n in graph.node if n.op_type == "Conv" and producers.get(n.input[0]) == "DequantizeLinear"
        ]
        # stem, depthwise, pointwise (ort-cpu keeps the 3-channel stem in FP32: its narrow image-input rule)
        assert len(quantized_inputs) == (2 if target == "ort-cpu" else 3)
        if target == "tensorrt":
            assert producers.get(gather.input[0]) != "DequantizeLinear"  # TensorRT: Q/DQ only into weighted ops
    engine = create_runner("ort-cpu", bundle)
    twin = twin_module(bundle.model_path)
    x = images.as_float()
    with torch.no_grad():
        twin_logits = twin(torch.from_numpy(x)).numpy()
    agreement = compare_logits(engine.infer(x), twin_logits)
    assert agreement.top1_agreement >= 0.95


def test_allocation_choice_reaches_the_plan(cli, digits_checkpoint):
    base = ["gdws", digits_checkpoint, "--arch", "digits_cnn", "--json"]
    per_layer = json.loads(cli(*base, "--budget", "0.5")[1])["plan"]
    common = json.loads(cli(*base, "--budget", "0.5", "--allocation", "global")[1])["plan"]
    by_beta = json.loads(cli(*base, "--beta", str(common["beta"]))[1])["plan"]
    assert per_layer["allocation"] == "per-layer" and common["allocation"] == by_beta["allocation"] == "global"
    assert by_beta["layers"] == common["layers"]  # the budget's beta, given directly, is the same plan
    assert per_layer["rewritable_macs"]["ratio"] >= 2 and common["rewritable_macs"]["ratio"] >= 2


def test_user_architecture_checkpoint_loads_from_another_directory(
    cli, tiny_checkpoint, tiny_arch_file, tmp_path, monkeypatch
):
    out = tmp_path / "tiny_gdws.pt"
    code, _, err = cli(
        "gdws",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--budget",
        "0.5",
        "--channel-multiple",
        "1",
        "-o",
        out,
    )
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UserError, match="--trust-code"):  # the recorded code file runs only on request
        load_model(out)
    loaded = load_model(out, trust_code=True)
    assert isinstance(loaded.module.conv2, GDWSConv2d) and loaded.spec.shape == (3, 16, 16)
