import json


def test_gdws_prints_the_plan_writes_a_checkpoint_and_reports_accuracy(cli, tmp_path, digits_checkpoint):
    out = tmp_path / "g.pt"
    code, stdout, _ = cli(
        "gdws",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "--budget",
        "0.5",
        "--test",
        "digits:test",
        "-o",
        out,
        "--json",
    )
    doc = json.loads(stdout)
    assert code == 0 and out.is_file() and doc["out"] == str(out)
    assert doc["plan"]["model_macs"]["ratio"] > 1 and set(doc["clean_accuracy"]) == {"original", "gdws"}
    code, stdout, _ = cli("gdws", digits_checkpoint, "--arch", "digits_cnn", "--budget", "0.5")
    assert code == 0 and "plan only" in stdout


def test_gdws_needs_a_beta_or_a_budget(cli, digits_checkpoint):
    code, _, err = cli("gdws", digits_checkpoint, "--arch", "digits_cnn")
    assert code == 2 and "--beta" in err
