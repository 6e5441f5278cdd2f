import json

from deploy_robust import zoo


def test_zoo_listing(cli):
    code, stdout, _ = cli("info", "--zoo", "--json")
    assert code == 0 and [e["name"] for e in json.loads(stdout)["results"]] == zoo.names()


def test_model_file_info(cli, tiny_checkpoint, tiny_arch_file):
    code, stdout, _ = cli("info", tiny_checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16")
    assert code == 0 and "conv2" in stdout and "Conv2d" in stdout


def test_help_everywhere(cli, capsys):
    for command in ("export", "eval", "info", "demo"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and out.startswith("usage: deploy-robust " + command)
    code, _, _ = cli()
    assert code == 2


def test_a_quantized_bundle_says_its_weight_range_and_how_int4_runs_at_int8_speed(cli, tmp_path, digits_checkpoint):
    code, _, err = cli(
        "export",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--precision",
        "int4",
        "--calib",
        "digits:train",
        "--int8-weights",
        "reduced",
        "-o",
        tmp_path / "b",
    )
    assert code == 0, err
    code, stdout, _ = cli("info", tmp_path / "b")
    assert code == 0 and "8-bit weights" in stdout and "reduced range (63 levels)" in stdout
    assert "INT4 conv weights" in stdout and "widen them to INT8 at load" in stdout


def test_a_bundle_lists_every_layer_with_its_precision_rounding_and_reason(cli, tmp_path, digits_checkpoint):
    code, _, err = cli(
        "export",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--precision",
        "int8",
        "--calib",
        "digits:train",
        "-o",
        tmp_path / "b",
    )
    assert code == 0, err
    code, stdout, _ = cli("info", tmp_path / "b")
    header = next(line for line in stdout.splitlines() if line.startswith("layer "))
    assert header.split() == ["layer", "op", "precision", "source", "dtype", "rounding", "reason"]
    assert "fp32 (asked int8)" in stdout and "narrow image-input conv" in stdout and "gptq" in stdout


def test_a_folder_without_a_manifest_is_named_as_such(cli, tmp_path):
    (tmp_path / "not-a-bundle").mkdir()
    code, _, err = cli("info", tmp_path / "not-a-bundle")
    assert code == 2 and "is a folder but not a bundle: it has no manifest.json" in err.strip().splitlines()[-1]
