import numpy as np
import pytest

from deploy_robust.data import Dataset
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.document import SCHEMA, result_document
from deploy_robust.verify.suites import Attack, Randomness
from deploy_robust.verify.threat import ThreatModel


class _Bundle:
    path, precision = "b", "int8"

    class manifest:
        target = "ort-cpu"


PLAN = [Attack("pgd-ce", "S", "pgd", {"steps": 1}), Attack("square", "E", "square", {"queries": 1})]


def _doc(labels, e_pred, pgd_ok, square_ok, passes=1):
    data = Dataset(np.zeros((len(labels), 1, 2, 2), np.float32), np.array(labels), "toy")
    merged = {
        "e_clean_pred": np.array(e_pred).reshape(passes, -1),
        "s_clean_pred": np.array(e_pred).reshape(passes, -1)[0],
        "attack:pgd-ce": np.array(pgd_ok).reshape(passes, -1),
        "attack:square": np.array(square_ok).reshape(passes, -1),
        "s_agree_on_adversarial": np.array([True, False]),
    }
    randomness = Randomness(passes=passes)
    return result_document(
        _Bundle,
        data,
        ThreatModel("linf", 0.1),
        options=VerifyOptions(suite="quick"),
        plan=PLAN,
        merged=merged,
        randomness=randomness,
        zero_grad=0,
        seconds=1.234,
    )


def test_robust_accuracy_is_the_per_example_worst_case_over_every_attack():
    # 4 points: E right on 3; PGD breaks point 1, Square breaks point 2 (different points)
    doc = _doc([0, 1, 2, 3], [0, 1, 2, 0], [True, False, True, False], [True, True, False, False])
    assert doc["schema"] == SCHEMA and doc["clean_accuracy"] == 0.75
    # the cascade: robust after each attack and every one before it, and what each broke beyond the earlier ones
    assert [a["robust_accuracy"] for a in doc["attacks"]] == [0.5, 0.25]
    assert [a["broke"] for a in doc["attacks"]] == [1, 1] and "attacks_definition" in doc
    assert doc["robust_accuracy"] == 0.25 and doc["robust_accuracy_gradient_attacks_only"] == 0.5
    lo, hi = doc["robust_accuracy_ci95"]
    assert lo < 0.25 < hi and doc["agreement_E_S_on_S_adversarial"] == 0.5 and doc["seconds"] == 1.23


def test_a_stochastic_engine_counts_a_point_only_if_every_pass_is_right():
    doc = _doc([0, 1], [0, 1, 0, 1], [True, True, True, False], [True, True, True, True], passes=2)
    assert doc["robust_accuracy"] == 0.5 and doc["expected_robust_accuracy"] == pytest.approx(0.75)
    assert doc["stochastic_engine"]["scoring_passes"] == 2 and "robust_accuracy_definition" in doc


def test_the_summary_reader_reads_what_verify_writes_and_refuses_anything_else(tmp_path):
    import json

    import pytest

    from deploy_robust.errors import UserError
    from deploy_robust.verify.document import SCHEMA, VerifySummary

    doc = {
        "schema": SCHEMA,
        "threat_model": {"norm": "linf", "eps": 0.1, "description": "L-inf, eps 0.1"},
        "data": {"name": "digits:test", "n": 50},
        "suite": "quick",
        "clean_accuracy": 0.98,
        "robust_accuracy": 0.7,
        "robust_accuracy_ci95": [0.56, 0.81],
    }
    path = tmp_path / "verify.json"
    path.write_text(json.dumps(doc))
    summary = VerifySummary.read(path)
    assert summary.setting == ("linf", 0.1, 50, "digits:test", "quick") and summary.robust_ci95 == (0.56, 0.81)
    for bad in ({**doc, "schema": "other"}, {k: v for k, v in doc.items() if k != "suite"}, [1, 2]):
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError, match="not a verify.json deploy-robust reads"):
            VerifySummary.read(path)
