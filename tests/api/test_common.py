"""ModelOptions reads a model file the way every verb does; a Result is judged by its gates alone."""

import pytest

from deploy_robust.api import ModelOptions, Result
from deploy_robust.errors import UserError


def test_model_options_read_a_state_dict_through_its_arch(digits_checkpoint):
    loaded = ModelOptions("digits_cnn").load(digits_checkpoint)
    assert loaded.source["format"] == "state_dict" and loaded.source["arch"] == "digits_cnn"
    assert loaded.spec.num_classes == 10
    with pytest.raises(UserError):
        ModelOptions().load(digits_checkpoint)  # a bare state_dict needs its architecture


def test_a_result_passes_only_when_every_gate_passes():
    passing = {"name": "accuracy", "op": ">=", "threshold": 0.5, "value": 0.9, "passed": True}
    failing = {"name": "robust_accuracy", "op": ">=", "threshold": 0.5, "value": 0.1, "passed": False}
    assert Result({}).passed and Result({}).failure is None
    assert Result({"gates": [passing]}).passed
    result = Result({"gates": [passing, failing]})
    assert not result.passed and "robust_accuracy" in result.failure
