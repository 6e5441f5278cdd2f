import io
import json

import numpy as np
import pytest

from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions


@pytest.fixture(scope="module")
def plain_doc(digits_bundles, digits_test):
    return run_verify(
        digits_bundles["plain"],
        digits_test,
        ThreatModel("linf", 0.1),
        VerifyOptions(n=120, suite="quick", sweep=(0, 0.1, 0.5)),
    )


def test_robust_accuracy_is_the_per_example_worst_case(plain_doc):
    assert plain_doc["robust_accuracy"] == plain_doc["attacks"][-1]["robust_accuracy"]  # the cascade's last row
    after = [a["robust_accuracy"] for a in plain_doc["attacks"]]
    assert after == sorted(after, reverse=True) and sum(a["broke"] for a in plain_doc["attacks"]) == round(
        120 * (plain_doc["clean_accuracy"] - plain_doc["robust_accuracy"])
    )
    assert plain_doc["robust_accuracy"] < plain_doc["clean_accuracy"]
    lo, hi = plain_doc["robust_accuracy_ci95"]
    assert lo <= plain_doc["robust_accuracy"] <= hi
    assert plain_doc["models"]["S"]["top1_agreement_with_E"] == 1.0
    assert plain_doc["agreement_E_S_on_S_adversarial"] >= 0.99
    assert [p["eps"] for p in plain_doc["eps_curve"]] == [0, 0.1, 0.5] and plain_doc["eps_curve"][-1]["accuracy"] < 0.05
    assert plain_doc["flags"] == []


def test_the_sweep_is_warm_started_from_the_suites_verdict(plain_doc, digits_bundles, digits_test):
    from deploy_robust.verify.document import per_example

    curve = [p["accuracy"] for p in plain_doc["eps_curve"]]
    points = plain_doc["eps_curve_points"]  # the sweep runs on the first 100 of the 120 points
    assert points == 100 and curve[0] == per_example(plain_doc, "clean")[:points].mean()
    assert curve[1] == per_example(plain_doc, "robust")[:points].mean()
    assert curve == sorted(curve, reverse=True)
    # the same sweep from scratch (no verdict to start from) finds no less robustness at the larger eps
    from deploy_robust.runtimes import create_runner
    from deploy_robust.verify.protocol import attack_twin, eps_curve

    bundle = digits_bundles["plain"]
    cold = eps_curve(
        attack_twin(bundle),
        create_runner("ort-cpu", bundle),
        digits_test.take(points),
        ThreatModel("linf", 0.1),
        (0, 0.1, 0.5),
        128,
        0,
    )
    assert cold[0]["accuracy"] == curve[0] and cold[1]["accuracy"] >= curve[1] and cold[2]["accuracy"] >= curve[2]


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
    naive = run_verify(
        digits_bundles["masked"], digits_test, threat, VerifyOptions(n=120, suite="quick", sweep=None, bpda=False)
    )
    honest = run_verify(digits_bundles["masked"], digits_test, threat, VerifyOptions(n=120, suite="quick", sweep=None))
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
    written = json.loads((bundle / "verify.json").read_text())
    assert {k: doc[k] for k in written} == written and doc["command"] == "verify" and (bundle / "report.md").is_file()
    assert doc["gates"][0]["passed"]
    code, _, err = cli(*args, "--min-robust-acc", "0.999")
    assert code == 1 and "gate failed: robust_accuracy" in err
    code, _, err = cli(*args, "--max-robust-drop", "0.1")
    assert code == 2 and "need --reference" in err
    code, _, err = cli("verify", bundle, "--data", "digits:test", "--eps", "abc")
    assert code == 2 and "--eps must be a number" in err


def test_stochastic_engine_is_scored_over_passes_with_eot(digits_bundles, digits_test):
    bundle = digits_bundles["noisy"]
    assert bundle.manifest.model.stochastic is True
    threat = ThreatModel("linf", 0.1)
    doc = run_verify(bundle, digits_test, threat, VerifyOptions(n=60, suite="quick", sweep=None))
    randomness = doc["stochastic_engine"]
    assert randomness["stochastic"] and randomness["scoring_passes"] == 20 and randomness["eot_draws"] == 4
    assert randomness["stable_prediction_fraction"] < 1.0
    assert "randomness" in {f["flag"] for f in doc["flags"]}
    # Worst case over 20 passes can only be below what one run gets on average.
    assert doc["robust_accuracy"] <= doc["expected_robust_accuracy"] <= doc["clean_accuracy"]
    assert doc["clean_accuracy_worst_case"] <= doc["clean_accuracy"]
    assert all(a["robust_accuracy"] <= a["expected_robust_accuracy"] for a in doc["attacks"])
    naive = run_verify(bundle, digits_test, threat, VerifyOptions(n=60, suite="quick", sweep=None, eot=1))
    assert "no_eot" in {f["flag"] for f in naive["flags"]}


def test_l2_threat_runs_square_l2_on_the_engine(plain_doc, digits_bundles, digits_test):
    doc = run_verify(
        digits_bundles["plain"], digits_test, ThreatModel("l2", 1.0), VerifyOptions(n=60, suite="quick", sweep=None)
    )
    assert "square" in {a["attack"] for a in doc["attacks"]}
    assert doc["threat_model"]["description"].startswith("L2")
    assert doc["robust_accuracy"] < doc["clean_accuracy"]


def _interrupt_at_second_batch(monkeypatch, protocol, run, calls: list) -> None:
    """Run verify with a KeyboardInterrupt at batch 1, so batch 0 is left in the resume folder."""
    real = protocol._verify_batch

    def interrupted(*args):
        calls.append(args[10])  # the batch index
        if args[10] == 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(protocol, "_verify_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(protocol, "_verify_batch", real)


def test_an_interrupted_run_resumes_from_its_finished_batches(digits_bundles, digits_test, monkeypatch):
    from deploy_robust.verify import protocol

    bundle, threat = digits_bundles["plain"], ThreatModel("linf", 0.1)
    kwargs = dict(n=60, suite="quick", sweep=None, batch_size=30, layout="contiguous")  # bit-identical runs
    fresh = run_verify(bundle, digits_test, threat, VerifyOptions(resume=False, **kwargs))
    real, calls = protocol._verify_batch, []
    _interrupt_at_second_batch(
        monkeypatch, protocol, lambda: run_verify(bundle, digits_test, threat, VerifyOptions(**kwargs)), calls
    )
    assert (bundle.path / ".verify-progress").is_dir()
    monkeypatch.setattr(protocol, "_verify_batch", lambda *args: calls.append(args[10]) or real(*args))
    resumed = run_verify(bundle, digits_test, threat, VerifyOptions(**kwargs))
    assert calls == [0, 1, 1]  # batch 0 came from the checkpoint
    assert not (bundle.path / ".verify-progress").exists()
    assert resumed["resume"] == {"reused_batches": 1, "rejected_batch_files": 0}
    assert _untimed(resumed) == _untimed(fresh)


def _untimed(doc: dict) -> dict:
    """The document without wall times (and resume counts): what must be identical between runs."""
    drop = ("seconds", "seconds_total", "stage_seconds", "resume", "throughput")
    out = {k: v for k, v in doc.items() if k not in drop}
    out["attacks"] = [{k: v for k, v in a.items() if k != "seconds"} for a in doc["attacks"]]
    return out


def test_forged_resume_files_are_recomputed_not_trusted(digits_bundles, digits_test, monkeypatch, tmp_path):
    from deploy_robust.verify import protocol

    bundle, threat = digits_bundles["plain"], ThreatModel("linf", 0.1)
    kwargs = dict(n=60, suite="quick", sweep=None, batch_size=30, layout="contiguous")
    fresh = run_verify(bundle, digits_test, threat, VerifyOptions(resume=False, **kwargs))
    _interrupt_at_second_batch(
        monkeypatch, protocol, lambda: run_verify(bundle, digits_test, threat, VerifyOptions(**kwargs)), []
    )
    saved = next((bundle.path / ".verify-progress").glob("*/batch-00000.npz"))
    raw = saved.read_bytes()
    with np.load(io.BytesIO(raw[32:]), allow_pickle=False) as f:
        forged = {k: np.ones_like(f[k]) if f[k].dtype == bool else f[k] for k in f.files}  # "every point robust"
    buffer = io.BytesIO()
    np.savez(buffer, **forged)
    saved.write_bytes(raw[:32] + buffer.getvalue())  # the old tag over new results
    resumed = run_verify(bundle, digits_test, threat, VerifyOptions(**kwargs))
    assert resumed["resume"] == {"reused_batches": 0, "rejected_batch_files": 1}
    assert resumed["robust_accuracy"] == fresh["robust_accuracy"]


def test_html_report_is_self_contained(plain_doc, digits_bundles):
    from deploy_robust.verify.report import write

    written = write(digits_bundles["plain"], plain_doc)
    page = (digits_bundles["plain"].path / "report.html").read_text()
    assert any(p.name == "report.html" for p in written)
    assert page.startswith("<!doctype html>") and "<table>" in page and "data:image/png;base64," in page
    assert "per-example worst case" in page


def test_verify_progress_weighs_each_attack_and_credits_the_points_the_cascade_spares(monkeypatch):
    from deploy_robust.progress import check_deadline
    from deploy_robust.verify import protocol
    from deploy_robust.verify.suites import SUITES

    plan = list(SUITES["standard"].attacks)
    recorded = []

    class Recording:
        def update(self, n=1, free=False):
            recorded.append(("free", n) if free else n)  # free: credited, not worked now (no part of the ETA's rate)

        def doing(self, what):
            recorded.append(what)

        def close(self):
            pass

    monkeypatch.setattr(protocol, "bar", lambda total, desc, weighted: recorded.append(total) or Recording())
    batches = [(None, np.zeros(10)), (None, np.zeros(10))]
    shown = protocol._AttackProgress(plan, batches)
    total = recorded.pop(0)
    apgd_t = next(a for a in plan if a.name == "apgd-t-malt")
    shown.start(apgd_t, 1, points=10, attacked=4)  # 6 of 10 points already broken: their share is done
    for _ in range(50):  # the attack's iterations move the line as they run: 50 steps on 4 points
        check_deadline(4)
    shown.finish()
    assert recorded == ["apgd-t-malt, batch 2/2", ("free", 6 * 300), *[4] * 50, 4 * 300 - 200]  # 3 targets x 100
    assert total == 20 * sum(protocol.expected_steps(a) for a in plan)
    # an attack that runs past its estimate (rescue restarts) never moves the line past its share
    recorded.clear()
    shown.start(apgd_t, 0, points=10, attacked=2)
    for _ in range(400):
        check_deadline(2)
    shown.finish()
    assert recorded[1] == ("free", 8 * 300) and sum(recorded[2:]) == 2 * 300
    check_deadline(5)  # after the attack nothing counts
    assert recorded[1] == ("free", 8 * 300) and sum(recorded[2:]) == 2 * 300
