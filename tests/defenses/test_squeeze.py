"""Feature squeezing: squeezers, export in both modes, and verify's view of each."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.defenses.squeeze import BitDepth, MedianSmoothing, apply_squeezing, parse_squeezers
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions


def test_squeezers():
    x = torch.tensor([[[[0.0, 0.2, 0.49, 0.51, 1.0, 0.9]]]])
    assert torch.equal(BitDepth(1)(x), torch.tensor([[[[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]]]))
    image = torch.rand(2, 3, 9, 7)
    want = F.pad(image, (1, 1, 1, 1), mode="reflect").unfold(2, 3, 1).unfold(3, 3, 1).reshape(2, 3, 9, 7, 9)
    assert torch.equal(MedianSmoothing(3)(image), want.median(-1).values)
    assert [type(s) for s in parse_squeezers("bits:5, median:2")] == [BitDepth, MedianSmoothing]
    for bad in ("bits", "blur:2", "bits:9", ""):
        with pytest.raises(UserError):
            parse_squeezers(bad)


def test_squeeze_mode_exports_and_masks_gradients_that_bpda_restores(cli, digits_checkpoint, tmp_path):
    code, stdout, err = cli(
        "export", digits_checkpoint, "--arch", "digits_cnn", "-o", tmp_path / "sq", "--squeeze", "bits:3"
    )
    assert code == 0, err
    assert "defense: feature squeezing (squeeze): BitDepth(bits=3)" in stdout
    bundle = open_bundle(tmp_path / "sq")
    onnx.checker.check_model(onnx.load(str(bundle.model_path)), full_check=True)
    reference = apply_squeezing(load_model(digits_checkpoint, "digits_cnn"), "bits:3").reference()
    x, _ = next(load_dataset("digits:test").batches(64))
    with torch.no_grad():
        assert np.abs(create_runner("ort-cpu", bundle).infer(x) - reference(torch.from_numpy(x)).numpy()).max() < 1e-4
    threat, test = ThreatModel("linf", 0.1), load_dataset("digits:test")
    masked = run_verify(bundle, test, threat, VerifyOptions(n=80, suite="quick", sweep=None, bpda=False))
    honest = run_verify(bundle, test, threat, VerifyOptions(n=80, suite="quick", sweep=None))
    assert "zero_gradients" in {f["flag"] for f in masked["flags"]}
    assert honest["zero_gradient_points_on_S"] == 0
    assert honest["robust_accuracy_gradient_attacks_only"] < masked["robust_accuracy_gradient_attacks_only"]


def test_detect_mode_has_a_score_output_a_calibrated_threshold_and_is_verified(cli, digits_checkpoint, tmp_path):
    code, stdout, err = cli(
        "export",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "-o",
        tmp_path / "det",
        "--squeeze",
        "bits:4",
        "--squeeze-mode",
        "detect",
        "--calib",
        "digits:train",
        "--squeeze-fpr",
        "0.1",
    )
    assert code == 0, err
    bundle = open_bundle(tmp_path / "det")
    defense = bundle.manifest.defense.fields
    assert [o.name for o in onnx.load(str(bundle.model_path)).graph.output] == ["logits", "squeeze_score"]
    assert defense["target_fpr"] == 0.1 and defense["threshold"] > 0
    # The threshold flags about 10% of clean training images by construction.
    x, _ = next(load_dataset("digits:train").batches(1000))
    _, score = create_runner("ort-cpu", bundle).infer_outputs(x)
    assert 0.05 <= (score > defense["threshold"]).mean() <= 0.1
    doc = run_verify(
        bundle, load_dataset("digits:test"), ThreatModel("linf", 0.1), VerifyOptions(n=60, suite="quick", sweep=None)
    )
    detector = doc["detector"]
    assert 0 <= detector["false_positive_rate_on_test"] <= 0.3
    assert 0 <= detector["unaware_attack"]["detection_rate"] <= 1
    unaware = detector["unaware_attack"]
    # Counting flagged points as caught helps; an adversary who knows the detector takes some of that back.
    assert unaware["robust_accuracy_ignoring_detector"] <= unaware["robust_accuracy_with_detector"]
    assert detector["robust_accuracy_detector_aware"] < unaware["robust_accuracy_with_detector"]


def test_detect_mode_needs_calibration_data(cli, digits_checkpoint, tmp_path):
    code, _, err = cli(
        "export",
        digits_checkpoint,
        "--arch",
        "digits_cnn",
        "-o",
        tmp_path / "x",
        "--squeeze",
        "bits:4",
        "--squeeze-mode",
        "detect",
    )
    assert code == 2 and "needs --calib" in err and not (tmp_path / "x").exists()
