import pytest

from deploy_robust.api import ExportRequest, ModelOptions, SqueezeOptions, Transforms, export
from deploy_robust.runtimes import create_runner
from deploy_robust.verify.detection import detector_of, verify_detector
from deploy_robust.verify.threat import ThreatModel


@pytest.fixture(scope="module")
def detect_bundle(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("detection") / "det"
    request = ExportRequest(
        digits_checkpoint,
        out,
        calib="digits:train",
        transforms=Transforms(squeeze=SqueezeOptions("bits:4", "detect", 0.1)),
        model_options=ModelOptions("digits_cnn"),
    )
    return export(request).bundle


def test_only_a_detecting_defense_has_a_detector(detect_bundle, digits_bundles):
    assert detector_of(digits_bundles["plain"]) is None
    detector = detector_of(detect_bundle)
    assert detector["score_output"] == "squeeze_score" and detector["threshold"] > 0


def test_the_aware_attack_takes_back_what_flagging_gave_on_the_engine_it_is_given(detect_bundle, digits_test):
    data = digits_test.take(48)
    threat = ThreatModel("linf", 0.1)
    on_ort = verify_detector(detect_bundle, data, threat, steps=10)
    on_torch = verify_detector(detect_bundle, data, threat, steps=10, engine=create_runner("torch", detect_bundle))
    for doc in (on_ort, on_torch):
        unaware = doc["unaware_attack"]
        assert unaware["robust_accuracy_ignoring_detector"] <= unaware["robust_accuracy_with_detector"]
        assert doc["robust_accuracy_detector_aware"] <= unaware["robust_accuracy_with_detector"]
        lo, hi = doc["robust_accuracy_detector_aware_ci95"]
        assert lo <= doc["robust_accuracy_detector_aware"] <= hi
    # the same graph on two engines: the same clean flags up to float rounding at the threshold
    assert abs(on_ort["false_positive_rate_on_test"] - on_torch["false_positive_rate_on_test"]) <= 2 / 48
