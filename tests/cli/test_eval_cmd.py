import json

import pytest


def _bundle(cli, tmp_path, ckpt, arch):
    out = tmp_path / "b"
    assert cli("export", ckpt, "--arch", arch, "--input-shape", "3,16,16", "-o", out)[0] == 0
    return out


def test_reference_comparison_and_passing_gates(cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz):
    out = _bundle(cli, tmp_path, tiny_checkpoint, tiny_arch_file)
    code, stdout, _ = cli(
        "eval",
        out,
        "--data",
        image_npz,
        "--reference",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--min-agreement",
        "1.0",
        "--min-accuracy",
        "0",
        "--json",
    )
    doc = json.loads(stdout)
    assert code == 0
    assert doc["reference"]["agreement"]["top1_agreement"] == 1.0
    assert doc["reference"]["agreement"]["max_abs_logit_diff"] <= 1e-4
    assert [g["passed"] for g in doc["gates"]] == [True, True]


def test_the_reference_takes_shape_classes_and_normalization_from_the_bundle(
    cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz
):
    out = tmp_path / "b"
    shape = ("--input-shape", "3,16,16", "--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3")
    assert cli("export", tiny_checkpoint, "--arch", tiny_arch_file, *shape, "-o", out)[0] == 0
    # no --input-shape, --mean or --std the second time: the bundle records them
    code, stdout, err = cli("eval", out, "--data", image_npz, "--reference", tiny_checkpoint, "--arch", tiny_arch_file,
                            "--json")  # fmt: skip
    assert code == 0, err
    agreement = json.loads(stdout)["reference"]["agreement"]
    assert agreement["top1_agreement"] == 1.0 and agreement["max_abs_logit_diff"] <= 1e-4


def test_failing_gate_exits_1(cli, tmp_path, tiny_checkpoint, tiny_arch_file, image_npz):
    out = _bundle(cli, tmp_path, tiny_checkpoint, tiny_arch_file)
    code, _, err = cli("eval", out, "--data", image_npz, "--min-accuracy", "1.0")  # an untrained tiny net
    assert code == 1 and "gate failed: accuracy" in err


def test_eval_model_file_in_torch(cli, tiny_checkpoint, tiny_arch_file, image_npz):
    code, stdout, _ = cli(
        "eval", tiny_checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16", "--data", image_npz
    )
    assert code == 0 and "accuracy" in stdout and "95% CI" in stdout


def test_ort_backend_on_a_model_file_asks_for_export(cli, tiny_checkpoint, tiny_arch_file, image_npz):
    code, _, err = cli(
        "eval",
        tiny_checkpoint,
        "--arch",
        tiny_arch_file,
        "--input-shape",
        "3,16,16",
        "--data",
        image_npz,
        "--backend",
        "ort-cpu",
    )
    assert code == 2 and "export the model first" in err


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_eval_and_bench_on_the_torch_backend_run_every_precision(cli, tmp_path, digits_checkpoint, precision):
    """The torch backend runs a bundle's own Q/DQ graph in a fresh process state: no op table depends on
    what else was imported (it used to fail on INT8/INT4 with 'cannot run in torch: DequantizeLinear')."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / precision
    calib = ["--calib", "digits:train", "--calib-n", "64"] if precision != "fp32" else []
    code, _, err = cli("export", digits_checkpoint, "--arch", "digits_cnn", "--precision", precision, *calib, "-o", out)
    assert code == 0, err
    script = (
        "import sys, json; from deploy_robust.cli import main; "
        f"sys.exit(main(['eval', {str(out)!r}, '--data', 'digits:test', '--backend', 'torch', '--json']))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    torch_accuracy = json.loads(done.stdout)["accuracy"]
    code, stdout, _ = cli("eval", out, "--data", "digits:test", "--json")
    assert code == 0 and abs(json.loads(stdout)["accuracy"] - torch_accuracy) <= 0.01  # the engine agrees
    code, _, err = cli("bench", out, "--backend", "torch", "--batch", "1", "--duration", "0.05", "--warmup", "1")
    assert code == 0, err
