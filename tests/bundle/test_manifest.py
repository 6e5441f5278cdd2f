import pytest

from deploy_robust.bundle.manifest import validate
from deploy_robust.errors import UserError
from tests.bundle.test_store import MANIFEST


def test_a_valid_manifest_passes_unchanged():
    assert validate(dict(MANIFEST), "m") == MANIFEST


@pytest.mark.parametrize("change, message", [
    ({"model": {"file": "../outside.onnx"}}, "plain file name"),
    ({"model": {"file": "model.onnx", "batch": 1_000_000_000}}, "model.batch"),
    ({"model": {"file": "model.onnx", "batch": True}}, "model.batch"),
    ({"model": {"file": "model.onnx", "sha256": "abc"}}, "sha256"),
    ({"input": {"shape": [3, 100000, 100000], "num_classes": 10}}, "input size"),
    ({"input": {"shape": [3, 8, 8], "num_classes": 10 ** 9}}, "num_classes"),
    ({"input": {"shape": [3, 8, 8], "num_classes": 10, "normalization": {"mean": [0.5], "std": [float("nan")]}}},
     "finite"),
    ({"input": {"shape": "3,8,8", "num_classes": 10}}, "list C,H,W"),
    ({"seed": -1}, "seed"),
    ({"seed": 2 ** 70}, "seed"),
    ({"files": {"../x": "0" * 64}}, "plain file names"),
    ({"precision": {"mode": 8}}, "precision.mode"),
])
def test_fields_are_type_and_range_checked(change, message):
    with pytest.raises(UserError, match=message):
        validate(MANIFEST | change, "m")
