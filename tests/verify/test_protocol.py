import json

import pytest

from deploy_robust.verify import ThreatModel, run_verify


@pytest.fixture(scope="module")
def plain_doc(digits_bundles, digits_test):
    return run_verify(digits_bundles["plain"], digits_test, ThreatModel("linf", 0.1), n=120, suite="quick",
                      sweep=(0, 0.1, 0.5))


def test_robust_accuracy_is_the_per_example_worst_case(plain_doc):
    assert plain_doc["robust_accuracy"] <= min(a["robust_accuracy"] for a in plain_doc["attacks"])
    assert plain_doc["robust_accuracy"] < plain_doc["clean_accuracy"]
    lo, hi = plain_doc["robust_accuracy_ci95"]
    assert lo <= plain_doc["robust_accuracy"] <= hi
    assert plain_doc["models"]["S"]["top1_agreement_with_E"] == 1.0
    assert plain_doc["agreement_E_S_on_S_adversarial"] >= 0.99
    assert [p["eps"] for p in plain_doc["eps_curve"]] == [0, 0.1, 0.5] and plain_doc["eps_curve"][-1]["accuracy"] < 0.05
    assert plain_doc["flags"] == []


def test_report_files_are_written_into_the_bundle(plain_doc, digits_bundles):
    from deploy_robust.verify.report import write

    bundle = digits_bundles["plain"]
    write(bundle, plain_doc)
    report = (bundle.path / "report.md").read_text()
    assert report.startswith("# Verify") and "per-example worst case" in report and "eps_curve.png" in report
    assert (bundle.path / "eps_curve.png").stat().st_size > 1000
    assert json.loads((bundle.path / "verify.json").read_text())["robust_accuracy"] == plain_doc["robust_accuracy"]


def test_gradient_masking_is_flagged_and_bpda_sees_through_it(digits_bundles, digits_test, plain_doc):
    threat = ThreatModel("linf", 0.1)
    naive = run_verify(digits_bundles["masked"], digits_test, threat, n=120, suite="quick", sweep=None, bpda=False)
    honest = run_verify(digits_bundles["masked"], digits_test, threat, n=120, suite="quick", sweep=None)
    by = {a["attack"]: a["robust_accuracy"] for a in naive["attacks"]}
    assert by["pgd-ce"] > plain_doc["robust_accuracy"] + 0.2  # plain gradients are masked
    assert {"zero_gradients", "black_box_beats_white_box"} <= {f["flag"] for f in naive["flags"]}
    honest_pgd = {a["attack"]: a["robust_accuracy"] for a in honest["attacks"]}["pgd-ce"]
    assert honest_pgd < by["pgd-ce"] - 0.2  # straight-through gradients break the masking
    assert honest["robust_accuracy"] <= plain_doc["robust_accuracy"] + 0.1


def test_cli_gates_and_bad_input(cli, digits_bundles, tmp_path):
    bundle = digits_bundles["plain"].path
    args = ("verify", bundle, "--data", "digits:test", "--eps", "0.1", "--n", "60", "--suite", "quick", "--no-sweep")
    code, stdout, err = cli(*args, "--min-clean-acc", "0.5", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc == json.loads((bundle / "verify.json").read_text()) and (bundle / "report.md").is_file()
    assert doc["gates"][0]["passed"]
    code, _, err = cli(*args, "--min-robust-acc", "0.999")
    assert code == 1 and "gate failed: robust_accuracy" in err
    code, _, err = cli(*args, "--max-robust-drop", "0.1")
    assert code == 2 and "need --reference" in err
    code, _, err = cli("verify", bundle, "--data", "digits:test", "--eps", "abc")
    assert code == 2 and "--eps must be a number" in err
