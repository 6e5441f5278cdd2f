import pytest
import json


def test_demo_trains_exports_and_evaluates(cli, tmp_path):
    code, stdout, _ = cli("demo", "-o", tmp_path / "demo", "--epochs", "15", "--bench-seconds", "0.2", "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["data"] == {"name": "digits:test", "n": 360} and doc["command"] == "demo"
    names = [r["name"] for r in doc["results"]]
    assert names == [
        "reference",
        "fp32 bundle",
        "fp16 bundle",
        "int8 bundle",
        "int4 bundle",
        "gdws-fp32 bundle",
        "gdws-int8 bundle",
    ]
    reference, fp32, fp16, int8, int4, gdws32, gdws8 = doc["results"]
    assert reference["accuracy"] > 0.9  # a real model, trained in seconds
    assert fp32["accuracy"] == reference["accuracy"] and fp32["agreement"]["max_abs_logit_diff"] <= 1e-4
    assert fp16["agreement"]["top1_agreement"] >= 0.99
    assert int8["agreement"]["top1_agreement"] >= 0.98 and int4["accuracy"] > 0.9
    assert int4["model_bytes"] < int8["model_bytes"] < fp32["model_bytes"]
    assert (tmp_path / "demo" / "fp32" / "manifest.json").is_file()
    assert 0 < int8["robust_accuracy"] < int8["accuracy"]  # every bundle is verified
    assert (tmp_path / "demo" / "int8" / "report.html").is_file()
    # the GDWS variant: fewer MACs, still a working classifier, on the frontier with the others
    gdws_manifest = json.loads((tmp_path / "demo" / "gdws-fp32" / "manifest.json").read_text())
    assert gdws_manifest["transforms"]["gdws"]["rewritable_macs"]["ratio"] >= 2
    assert gdws32["accuracy"] > 0.8 and gdws8["agreement"]["top1_agreement"] > 0.8 and "robust_accuracy" in gdws8


@pytest.mark.slow  # a second whole demo (~50 s); the embedded default runs in make test
def test_demo_on_a_user_model(cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz):
    code, stdout, _ = cli(
        "demo",
        "-o",
        tmp_path / "d",
        "--model",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--data",
        image_npz,
        "--json",
    )
    assert code == 0 and json.loads(stdout)["n"] == 40


def test_demo_model_needs_data(cli, tmp_path, tiny_checkpoint):
    code, _, stderr = cli("demo", "-o", tmp_path / "d", "--model", tiny_checkpoint)
    assert code == 2 and "--model needs --data" in stderr
