import json

import pytest

from deploy_robust.bundle import open_bundle
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.report import blocks, html, markdown, write


@pytest.fixture(scope="module")
def doc(digits_bundles, digits_test):
    return run_verify(
        digits_bundles["plain"],
        digits_test,
        ThreatModel("linf", 0.1),
        VerifyOptions(n=32, suite="quick", sweep=(0, 0.1), resume=False),
    )


def test_the_report_puts_flags_first_then_the_headline_and_every_attack(doc):
    titles = [b[1] for b in blocks(doc) if b[0] in ("h1", "h2")]
    assert titles[1] in ("Flags", "Headline (engine E)") and "Attacks" in titles
    text = markdown(doc)
    assert f"**{100 * doc['robust_accuracy']:.2f}%**" in text
    assert all(a["attack"] in text for a in doc["attacks"]) and "| eps | accuracy |" in text
    assert "**E** is the engine that ships" in text and "**S** is" in text and "**R** is" in text  # letters defined


def test_html_is_self_contained_and_escapes_what_it_shows(doc):
    page = html(doc | {"bundle": doc["bundle"] | {"path": "<b>&"}}, {"eps_curve.png": b"\x89PNG"})
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page and "data:image/png;base64," in page


def test_write_puts_json_reports_and_the_curve_into_the_bundle(tmp_path, digits_bundles, doc):
    import shutil

    copy = open_bundle(shutil.copytree(digits_bundles["plain"].path, tmp_path / "b"))
    written = write(copy, doc)
    assert {p.name for p in written} == {"verify.json", "report.md", "report.html", "eps_curve.png"}
    assert json.loads((copy.path / "verify.json").read_text())["robust_accuracy"] == doc["robust_accuracy"]
    open_bundle(copy.path)  # still a valid bundle: every file it wrote is recorded


def test_two_verifies_leave_two_run_folders_and_the_top_level_is_the_latest(tmp_path, digits_bundles, doc):
    import shutil

    copy = open_bundle(shutil.copytree(digits_bundles["plain"].path, tmp_path / "b"))
    before = copy.runs()  # the shared bundle may hold runs other tests wrote
    first = write(copy, doc)[0].parent
    other = doc | {"suite": "autoattack-standard", "robust_accuracy": 0.125}
    second = write(copy, other)[0].parent
    assert copy.runs() == [*before, first, second] and first != second
    assert "-quick-linf-0.1" in first.name and "-autoattack-standard-linf-0.1" in second.name  # -2 if same second
    # the earlier run is kept whole; the top-level copies are the latest run's
    assert json.loads((first / "verify.json").read_text())["robust_accuracy"] == doc["robust_accuracy"]
    assert (copy.path / "verify.json").read_bytes() == (second / "verify.json").read_bytes()
    assert (first / "eps_curve.png").is_file() and (first / "report.html").is_file()
    open_bundle(copy.path)


def test_the_report_says_what_did_not_run_and_times_every_stage(doc):
    assert set(doc["stage_seconds"]) == {"attacks", "eps_sweep"}
    assert doc["seconds_total"] >= sum(doc["stage_seconds"].values()) - 0.02  # each rounded to 0.01 s
    square = next(a for a in doc["attacks"] if a["attack"] == "square")
    assert 0 <= square["points_attacked"] <= doc["data"]["n"]
    text = markdown(doc)
    assert f"Took {doc['seconds_total']:g} s in all (attacks" in text and "eps sweep" in text
    nobody = doc | {"attacks": [a | {"points_attacked": 0} if a["attack"] == "square" else a for a in doc["attacks"]]}
    assert "not run: no survivors" in markdown(nobody)
    assert ("not run: no survivors" in text) == (square["points_attacked"] == 0)
