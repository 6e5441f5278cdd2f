"""`deploy-robust dq`: fine-tune, save, export on the trained grid; bad input exits 2 with one line."""

import torch

from deploy_robust.model.model_file import MODEL_KEY


def test_dq_then_export(cli, digits_checkpoint, tmp_path):
    out = tmp_path / "dq.pt"
    code, text, err = cli(
        "dq",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--bits",
        "4/4",
        "--beta",
        "1e-3",
        "--data",
        "digits:train",
        "--epochs",
        "1",
        "--adv",
        "fgsm",
        "--eps",
        "0.05",
        "--test",
        "digits:test",
        "--eval-n",
        "100",
        "-o",
        out,
    )
    assert code == 0, err
    doc = torch.load(out, weights_only=True)[MODEL_KEY]
    assert doc["dq"]["w_bits"] == 4 and doc["training"]["beta"] == 1e-3 and len(doc["training"]["losses"]) == 1
    assert set(doc["training"]["evaluation"]) == {"original", "dq"}
    assert "spectral norm" in text and "dq: clean" in text
    code, _, err = cli("export", out, "--precision", "int8", "-o", tmp_path / "bundle")
    assert code == 0, err
    code, text, _ = cli("info", tmp_path / "bundle")
    assert code == 0 and "DQ beta 0.001: w4a4 (edge layers w8, uint8 input), 1 epochs, adv fgsm eps 0.05" in text


def test_dq_rejects_bad_bits_and_float_export(cli, digits_checkpoint, tmp_path):
    code, _, err = cli(
        "dq",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--bits",
        "4",
        "--data",
        "digits:train",
        "-o",
        tmp_path / "x.pt",
    )
    assert code == 2 and "--bits must be W/A" in err and err.count("\n") == 1
    out = tmp_path / "ptq.pt"
    assert (
        cli(
            "dq",
            digits_checkpoint,
            "--arch",
            "digits_cnn",
            "--bits",
            "8/8",
            "--data",
            "digits:train",
            "--epochs",
            "0",
            "-o",
            out,
        )[0]
        == 0
    )
    code, _, err = cli("export", out, "--precision", "fp32", "-o", tmp_path / "b")
    assert code == 2 and "trained grid" in err and not (tmp_path / "b").exists()
