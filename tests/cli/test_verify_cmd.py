import json

from deploy_robust.export import export_bundle
from deploy_robust.ingest import load_model


def test_verify_prints_the_report_and_a_failed_gate_exits_1(cli, tmp_path, digits_checkpoint):
    bundle = export_bundle(load_model(digits_checkpoint, "digits_cnn"), tmp_path / "b")
    base = (
        "verify",
        bundle.path,
        "--data",
        "digits:test",
        "--eps",
        "0.05",
        "--n",
        "32",
        "--suite",
        "quick",
        "--no-sweep",
    )
    code, stdout, _ = cli(*base)
    assert code == 0 and "robust accuracy" in stdout and "written" in stdout
    code, stdout, err = cli(*base, "--min-robust-acc", "1.0", "--json")
    doc = json.loads(stdout)
    assert code == 1 and doc["gates"][0]["passed"] is False and "gate failed: robust_accuracy" in err


def test_verify_gates_that_need_a_reference_say_so(cli, tmp_path, digits_checkpoint):
    bundle = export_bundle(load_model(digits_checkpoint, "digits_cnn"), tmp_path / "b")
    code, _, err = cli("verify", bundle.path, "--data", "digits:test", "--eps", "0.05", "--max-robust-drop", "0.01")
    assert code == 2 and "need --reference" in err
