import json

import torch

from tests.conftest import make_tiny


def test_export_then_info_then_eval(cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz):
    out = tmp_path / "bundle"
    code, stdout, _ = cli(
        "export",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25",
        "-o",
        out,
    )
    assert code == 0 and "wrote" in stdout and (out / "model.onnx").is_file()
    code, stdout, _ = cli("info", out, "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["manifest"]["input"]["normalization"] == {"mean": [0.5] * 3, "std": [0.25]}
    code, stdout, _ = cli("eval", out, "--data", image_npz, "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["n"] == 40 and 0 <= doc["accuracy"] <= 1 and doc["backend"] == "ort-cpu"


def test_export_fp16_json(cli, tmp_path, tiny_checkpoint, tiny_arch_file):
    code, stdout, _ = cli(
        "export",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--precision",
        "fp16",
        "-o",
        tmp_path / "b",
        "--json",
    )
    assert code == 0 and json.loads(stdout)["manifest"]["precision"]["mode"] == "fp16"


def test_export_torchscript_fp16(cli, tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(make_tiny()), path)
    code, stdout, err = cli("export", path, "--input-shape", "3,16,16", "--precision", "fp16", "-o", tmp_path / "b")
    assert code == 0, err


def test_static_batch(cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz):
    code, _, _ = cli(
        "export",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--static-batch",
        "8",
        "-o",
        tmp_path / "b",
    )
    assert code == 0
    code, stdout, _ = cli("eval", tmp_path / "b", "--data", image_npz, "--n", "13", "--json")
    assert code == 0 and json.loads(stdout)["n"] == 13
