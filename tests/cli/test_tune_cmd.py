import json


ARGS = (
    "--calib",
    "digits:train",
    "--data",
    "digits:test",
    "--eps",
    "0.1",
    "--n",
    "40",
    "--final-n",
    "40",
    "--bench-seconds",
    "0.2",
    "--threads",
    "1",
    "--max-robust-drop",
    "0.05",
    "--max-clean-drop",
    "0.05",
)


def test_tune_prints_its_report_and_an_unmeetable_budget_exits_1_with_the_best_found(cli, tmp_path, digits_checkpoint):
    code, stdout, err = cli("tune", digits_checkpoint, "--arch", "digits_cnn", *ARGS, "-o", tmp_path / "t", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["command"] == "tune" and doc["pick"] and (tmp_path / "t" / "best" / "manifest.json").is_file()
    # the same tune asked to be faster than anything can be: exit 1, naming the fastest plan that held
    code, stdout, err = cli(
        "tune", digits_checkpoint, "--arch", "digits_cnn", *ARGS, "-o", tmp_path / "t", "--latency-budget-ms", "1e-9"
    )
    assert code == 1 and "no plan met the budget (none within --latency-budget-ms" in err and "fastest that held" in err
    assert "Pick: none" in stdout


def test_tune_refuses_what_the_target_cannot_run(cli, tmp_path, digits_checkpoint):
    code, _, err = cli(
        "tune",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        *ARGS,
        "-o",
        tmp_path / "t",
        "--target",
        "tensorrt",
        "--space",
        "int4",
    )
    assert code == 2 and "cannot run int4" in err and not (tmp_path / "t" / "best").exists()
