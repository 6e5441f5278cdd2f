"""EMPIR: DoReFa members, the in-graph vote, export, and verify's consistent loss."""

import json

import numpy as np
import onnx
import pytest
import torch

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.defenses.empir import Ensemble, parse_member, quantize_activation, quantize_weight
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner


def test_dorefa_grids_and_straight_through_gradients():
    w = torch.randn(64, requires_grad=True)
    q = quantize_weight(w, 2)
    assert set(torch.round(q.detach() * 3).tolist()) <= {-3.0, -1.0, 1.0, 3.0}  # {-1, -1/3, 1/3, 1}
    x = torch.tensor([-0.5, 0.1, 0.5, 0.9, 1.7], requires_grad=True)
    a = quantize_activation(x, 2)
    assert torch.allclose(a, torch.tensor([0.0, 0.0, 2 / 3, 1.0, 1.0]))
    a.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # straight through inside [0, 1], zero where clipped
    q.sum().backward()
    assert w.grad.abs().sum() > 0


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_vote_is_the_majority_else_the_full_precision_member():
    a, b, c = [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]
    x = torch.zeros(1, 1)
    assert Ensemble([Fixed(a), Fixed(b), Fixed(b)], full_precision=0)(x)[0].argmax().item() == 1  # majority
    assert Ensemble([Fixed(a), Fixed(b), Fixed(c)], full_precision=2)(x)[0].argmax().item() == 2  # no majority
    log_probs = Ensemble([Fixed(a), Fixed(b)], combine="average")(x)
    assert torch.allclose(log_probs.exp().sum(), torch.tensor(1.0))


def test_member_specs():
    assert parse_member("w2a4") == {"w_bits": 2, "a_bits": 4, "checkpoint": None}
    assert parse_member("fp32:m.pt")["checkpoint"] == "m.pt"
    for bad in ("w9a2", "int8", "w2"):
        with pytest.raises(UserError):
            parse_member(bad)


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory):
    from deploy_robust.cli import main

    path = tmp_path_factory.mktemp("empir") / "ens.pt"
    assert (
        main(
            [
                "ensemble",
                "--arch",
                "digits",
                "--member",
                "w2a4",
                "--member",
                "w2a4",
                "--member",
                "fp32",
                "--data",
                "digits:train",
                "--epochs",
                "12",
                "-o",
                str(path),
                "--json",
            ]
        )
        == 0
    )
    return path


def test_ensemble_exports_to_one_graph_matching_torch(cli, ensemble_file, tmp_path):
    code, stdout, err = cli("export", ensemble_file, "-o", tmp_path / "ens")
    assert code == 0, err
    assert "EMPIR ensemble w2a4, w2a4, fp32 (vote); attacks use ensemble_log_probs" in stdout
    bundle = open_bundle(tmp_path / "ens")
    graph = onnx.load(str(bundle.model_path))
    onnx.checker.check_model(graph, full_check=True)
    assert [o.name for o in graph.graph.output] == ["logits", "ensemble_log_probs", "member_log_probs"]
    assert bundle.manifest.defense.fields["members"] == ["w2a4", "w2a4", "fp32"]
    assert bundle.manifest.defense.fields["majority"] == 2
    loaded = load_model(ensemble_file)
    x, y = next(load_dataset("digits:test").batches(200))
    with torch.no_grad():
        votes, log_probs, member_log_probs = loaded.module(torch.from_numpy(x))
    engine_votes, engine_log_probs, engine_members = create_runner("ort-cpu", bundle).infer_outputs(x)
    assert engine_members.shape == (200, 3, 10)
    # the averaged probabilities are the members' probabilities averaged
    np.testing.assert_allclose(np.exp(engine_log_probs), np.exp(engine_members).mean(1), atol=1e-5)
    assert (np.abs(np.exp(engine_members) - member_log_probs.exp().numpy()) < 1e-4).mean() >= 0.99
    # Low-bit activations round; a float-rounding difference in a conv can move one value across a
    # rounding boundary, so parity is per element, not exact everywhere.
    assert (engine_votes.argmax(1) == votes.numpy().argmax(1)).mean() >= 0.995
    close = np.abs(np.exp(engine_log_probs) - log_probs.exp().numpy()) < 1e-4
    assert close.mean() >= 0.99
    assert (engine_votes.argmax(1) == y).mean() > 0.9


def test_int8_export_runs_members_on_integer_kernels_and_computes_the_same_ensemble(cli, ensemble_file, tmp_path):
    import onnxruntime as ort

    from deploy_robust.quant.twin import twin_module

    assert cli("export", ensemble_file, "-o", tmp_path / "fp32")[0] == 0
    code, _, err = cli("export", ensemble_file, "--precision", "int8", "-o", tmp_path / "int8")
    assert code == 0, err
    bundle = open_bundle(tmp_path / "int8")
    layers = {layer["name"]: layer["precision"] for layer in bundle.manifest.precision.layers}
    assert layers["members.0.1.0"] == "int8" and layers["members.2.0"] == "fp32"  # fp32 member stays float
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(bundle.model_path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    # each low-precision member's first conv fuses; its last conv feeds full-precision FC layers, so it stays float
    assert ops.count("QLinearConv") == 2
    x = load_dataset("digits:test").as_float()
    float_votes, float_log_probs, _ = create_runner("ort-cpu", open_bundle(tmp_path / "fp32")).infer_outputs(x)
    votes, log_probs, _ = create_runner("ort-cpu", bundle).infer_outputs(x)
    assert np.array_equal(votes.argmax(1), float_votes.argmax(1))
    assert np.abs(log_probs - float_log_probs).max() < 1e-4
    with torch.no_grad():
        twin_votes = twin_module(bundle.model_path)(torch.from_numpy(x))  # the first output: the vote
    assert (twin_votes.numpy().argmax(1) == votes.argmax(1)).mean() >= 0.995


def test_verify_uses_the_consistent_loss_and_shows_the_vote_masks_gradients(cli, ensemble_file, tmp_path):
    assert cli("export", ensemble_file, "-o", tmp_path / "ens")[0] == 0
    args = (
        "verify",
        tmp_path / "ens",
        "--data",
        "digits:test",
        "--eps",
        "0.1",
        "--n",
        "80",
        "--suite",
        "quick",
        "--no-sweep",
        "--json",
    )
    code, stdout, err = cli(*args)
    assert code == 0, err
    consistent = json.loads(stdout)
    code, stdout, err = cli(*args, "--attack-output", "logits")
    naive = json.loads(stdout)
    assert consistent["attacked_output"] == "ensemble_log_probs" and naive["attacked_output"] == "logits"
    assert "zero_gradients" in {f["flag"] for f in naive["flags"]}
    assert consistent["zero_gradient_points_on_S"] == 0
    assert consistent["robust_accuracy_gradient_attacks_only"] < naive["robust_accuracy_gradient_attacks_only"] - 0.1
    # every majority (any two of the three members) is attacked on its own; the naive run attacks only the vote
    by_name = {a["attack"]: a for a in consistent["attacks"]}
    pairs = [f"pgd-{loss} on members {pair}" for pair in ("0+1", "0+2", "1+2") for loss in ("ce", "margin")]
    assert all(by_name[name]["on"].startswith("S:members") for name in pairs)
    assert not any("on members" in a["attack"] for a in naive["attacks"])
    # robust = every attack survived: never above what any one attack leaves
    assert consistent["robust_accuracy"] <= min(a["robust_accuracy"] for a in consistent["attacks"])
    code, _, err = cli(*args, "--attack-output", "nope")
    assert code == 2 and "graph's outputs are logits, ensemble_log_probs, member_log_probs" in err


def test_ensemble_bad_input(cli, tmp_path):
    code, _, err = cli("ensemble", "--arch", "digits", "--member", "w2a4", "--member", "w2a4", "-o", tmp_path / "e.pt")
    assert code == 2 and "exactly one fp32 member" in err
    code, _, err = cli("ensemble", "--arch", "digits", "--member", "w2a4", "--member", "fp32", "-o", tmp_path / "e.pt")
    assert code == 2 and "--data" in err and not (tmp_path / "e.pt").exists()
