"""The one export -> self-check -> verify -> gates sequence: its options, and each step on a real bundle."""

import pytest

from deploy_robust import pipeline
from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions
from deploy_robust.ingest import load_model
from deploy_robust.pipeline import SAPOptions, SqueezeOptions, Transforms, VerifyGates
from deploy_robust.verify import ThreatModel, VerifyOptions


def test_transform_options_are_checked_when_made():
    with pytest.raises(UserError, match="--sap-fraction"):
        SAPOptions(fraction=0)
    with pytest.raises(UserError, match="one defense at a time"):
        Transforms(sap=SAPOptions(), squeeze=SqueezeOptions("bits:5"))
    assert not VerifyGates(min_clean_acc=0.5).need_reference and VerifyGates(min_agreement=0.9).need_reference


def test_prepare_adds_the_defense_and_export_checked_writes_the_bundle(digits_checkpoint, tmp_path):
    loaded = load_model(digits_checkpoint, "digits_cnn")
    prepared, plan = pipeline.prepare(loaded, Transforms(sap=SAPOptions(seed=0)), ExportOptions(), None)
    assert plan is None and prepared.defense["kind"] == "stochastic_activation_pruning" and loaded.defense is None
    with pytest.raises(UserError, match="detect exports at --precision fp32"):
        pipeline.prepare(loaded, Transforms(squeeze=SqueezeOptions("bits:4", "detect")), ExportOptions("int8"), None)
    bundle = pipeline.export_checked(loaded, tmp_path / "b", ExportOptions(), None)
    assert open_bundle(tmp_path / "b").manifest.to_json() == bundle.manifest.to_json()


def test_verify_gated_evaluates_the_gates_a_user_asked_for(digits_bundle, digits_checkpoint):
    bundle = open_bundle(digits_bundle)
    data = load_dataset("digits:test", bundle.spec.shape)
    options = VerifyOptions(n=16, suite="quick", sweep=None, resume=False)
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(UserError, match="need --reference"):
        pipeline.verify_gated(bundle, data, threat, options, None, VerifyGates(max_robust_drop=0.01))
    reference = load_model(digits_checkpoint, "digits_cnn").reference()
    doc = pipeline.verify_gated(bundle, data, threat, options, reference, VerifyGates(0.0, 1.0, 1.0))
    assert [(g["name"], g["passed"]) for g in doc["gates"]] == [
        ("clean_accuracy", True),
        ("robust_accuracy", doc["robust_accuracy"] >= 1.0),
        ("robust_drop_vs_reference", True),
    ]
    assert doc["robust_delta_vs_reference"] == doc["robust_accuracy"] - doc["reference_robust_accuracy"]
