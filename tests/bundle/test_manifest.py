import pytest

from deploy_robust.bundle.manifest import Manifest, validate
from deploy_robust.errors import UserError
from tests.bundle.test_store import MANIFEST


def test_a_valid_manifest_passes_unchanged():
    assert validate(dict(MANIFEST), "m") == MANIFEST


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"file": "../outside.onnx"}}, "plain file name"),
        ({"model": {"file": "model.onnx", "batch": 1_000_000_000}}, "model.batch"),
        ({"model": {"file": "model.onnx", "batch": True}}, "model.batch"),
        ({"model": {"file": "model.onnx", "sha256": "abc"}}, "sha256"),
        ({"input": {"shape": [3, 100000, 100000], "num_classes": 10}}, "input size"),
        ({"input": {"shape": [3, 8, 8], "num_classes": 10**9}}, "num_classes"),
        (
            {"input": {"shape": [3, 8, 8], "num_classes": 10, "normalization": {"mean": [0.5], "std": [float("nan")]}}},
            "finite",
        ),
        ({"input": {"shape": "3,8,8", "num_classes": 10}}, "list C,H,W"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**70}, "seed"),
        ({"files": {"../x": "0" * 64}}, "plain file names"),
        ({"precision": {"mode": 8}}, "precision.mode"),
    ],
)
def test_fields_are_type_and_range_checked(change, message):
    with pytest.raises(UserError, match=message):
        validate(MANIFEST | change, "m")


def test_a_version_1_manifest_migrates_with_its_model_hash_as_files():
    old = MANIFEST | {"schema_version": 1, "model": {"file": "model.onnx", "batch": 4, "sha256": "a" * 64}}
    m = Manifest.from_json(old, "m")
    assert m.schema_version == 2 and m.files == {"model.onnx": "a" * 64} and m.model.batch == 4


def test_typed_sections_read_what_verify_needs():
    defense = {
        "kind": "empir",
        "members": ["w2a4", "fp32", "w2a4"],
        "majority": 2,
        "member_output": "members",
        "attack_output": "log_probs",
    }
    m = Manifest.from_json(MANIFEST | {"defense": defense}, "m")
    assert (m.defense.kind, m.defense.members, m.defense.majority, m.defense.attack_output) == (
        "empir",
        ("w2a4", "fp32", "w2a4"),
        2,
        "log_probs",
    )
    assert m.defense.detector is None and m.model.batch is None and m.input.shape == (1, 8, 8)
    detector = Manifest.from_json(
        MANIFEST | {"defense": {"kind": "feature_squeezing", "score_output": "score", "threshold": 0.25}}, "m"
    ).defense.detector
    assert detector == {"score_output": "score", "threshold": 0.25}
