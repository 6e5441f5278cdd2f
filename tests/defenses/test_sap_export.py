"""SAP exported into one ONNX graph: checker, ONNX Runtime, torch parity (seeded) and in distribution (random)."""

import numpy as np
import onnx
import torch

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.defenses.sap import apply_sap
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner


def _export(cli, checkpoint, out, *extra):
    code, stdout, err = cli("export", checkpoint, "--arch", "digits_cnn", "-o", out, "--sap", "all", *extra)
    assert code == 0, err
    return open_bundle(out), stdout


def test_seeded_sap_matches_torch(cli, digits_checkpoint, tmp_path):
    bundle, stdout = _export(cli, digits_checkpoint, tmp_path / "seeded", "--sap-fraction", "0.5", "--sap-seed", "7")
    assert "defense: stochastic_activation_pruning (seeded (7))" in stdout
    onnx.checker.check_model(onnx.load(str(bundle.model_path)), full_check=True)
    assert bundle.manifest.defense.fields["layers"][0] == {"layer": "1", "units": 1024, "draws": 512}
    assert bundle.manifest.model.stochastic is False
    reference = apply_sap(load_model(digits_checkpoint, "digits_cnn"), None, 0.5, 7).reference()
    x, _ = next(load_dataset("digits:test").batches(64))
    with torch.no_grad():
        want = reference(torch.from_numpy(x)).numpy()
    got = create_runner("ort-cpu", bundle).infer(x)
    assert np.abs(got - want).max() < 1e-4


def test_random_sap_draws_fresh_in_onnx_runtime_and_matches_torch_in_distribution(cli, digits_checkpoint, tmp_path):
    bundle, stdout = _export(cli, digits_checkpoint, tmp_path / "random", "--sap-fraction", "0.5")
    assert bundle.manifest.model.stochastic is True and "verify scores it over 20 runs" in stdout
    ops = {n.op_type for n in onnx.load(str(bundle.model_path)).graph.node}
    assert "Multinomial" in ops
    engine = create_runner("ort-cpu", bundle)
    reference = apply_sap(load_model(digits_checkpoint, "digits_cnn"), None, 0.5).reference()
    x, _ = next(load_dataset("digits:test").batches(16))
    runs = 300
    ort_runs = np.stack([engine.infer(x) for _ in range(runs)])
    with torch.no_grad():
        torch_runs = np.stack([reference(torch.from_numpy(x)).numpy() for _ in range(runs)])
    assert not np.array_equal(ort_runs[0], ort_runs[1])
    # Same distribution: per-logit means agree within a few standard errors, spreads within 15%.
    stderr = np.sqrt(ort_runs.var(0) / runs + torch_runs.var(0) / runs)
    assert np.mean(np.abs(ort_runs.mean(0) - torch_runs.mean(0)) <= 4 * stderr + 1e-6) > 0.97
    ratio = ort_runs.std(0).mean() / torch_runs.std(0).mean()
    assert 0.85 < ratio < 1.15


def test_bad_sap_arguments_exit_2(cli, digits_checkpoint, tmp_path):
    code, _, err = cli("export", digits_checkpoint, "--arch", "digits_cnn", "-o", tmp_path / "x", "--sap", "nope")
    assert code == 2 and "no layer named nope" in err and not (tmp_path / "x").exists()
    code, _, err = cli(
        "export", digits_checkpoint, "--arch", "digits_cnn", "-o", tmp_path / "x", "--sap", "all", "--sap-fraction", "0"
    )
    assert code == 2 and "--sap-fraction" in err


def test_verify_attacks_sap_through_its_twin_with_eot(cli, digits_checkpoint, tmp_path):
    from deploy_robust.verify import ThreatModel, run_verify
    from deploy_robust.verify.options import VerifyOptions

    bundle, _ = _export(cli, digits_checkpoint, tmp_path / "verify", "--sap-fraction", "0.5")
    doc = run_verify(
        bundle, load_dataset("digits:test"), ThreatModel("linf", 0.1), VerifyOptions(n=40, suite="quick", sweep=None)
    )
    assert doc["stochastic_engine"]["stochastic"] and doc["stochastic_engine"]["eot_draws"] == 4
    assert "randomness" in {f["flag"] for f in doc["flags"]}
    assert doc["zero_gradient_points_on_S"] == 0  # gradients flow through SAP's scaling in the twin
    assert doc["robust_accuracy"] <= doc["expected_robust_accuracy"] < doc["clean_accuracy"]
