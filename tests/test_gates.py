import pytest

from deploy_robust import gates
from deploy_robust.errors import UserError


def test_minimum_and_maximum_gates_read_their_metric():
    results = gates.evaluate_all(
        gates.minimum("accuracy", 0.9) + gates.maximum("drop", 0.01), {"accuracy": 0.95, "drop": 0.02}
    )
    assert [(g["name"], g["op"], g["passed"]) for g in results] == [("accuracy", ">=", True), ("drop", "<=", False)]
    assert gates.failure_message(results) == "drop 0.0200 <= 0.01 fails"
    assert gates.failure_message(results[:1]) is None and gates.minimum("accuracy", None) == []


def test_a_gate_on_a_metric_the_run_lacks_is_a_user_error():
    with pytest.raises(UserError, match="--min-agreement cannot be checked"):
        gates.evaluate_all(gates.minimum("top1_agreement", 0.99, "--min-agreement"), {"accuracy": 1.0})
