"""The export's checks on the calibration images: a silently wrong bundle is refused (exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel

MEAN, STD = (0.5,), (0.05,)  # far from raw [0, 1]: a model trained behind it is lost on raw inputs


@pytest.fixture
def digits_with_training_normalization(monkeypatch):
    """digits_cnn as a generic built-in: no normalization in its spec, MEAN/STD the one `train` would use."""
    entry = zoo.get("digits_cnn")
    monkeypatch.setitem(zoo.ENTRIES, "digits_cnn", dataclasses.replace(entry, train_normalization=(MEAN, STD)))


@pytest.fixture(scope="module")
def normalized_checkpoint(tmp_path_factory):
    """digits_cnn weights trained behind (x - MEAN) / STD, saved as a bare state_dict."""
    from deploy_robust.normalize import normalizer
    from deploy_robust.seeding import seed_everything
    from deploy_robust.train import train_classifier

    seed_everything(0)
    model = zoo.get("digits_cnn").build()
    spec = zoo.get("digits_cnn").spec.replace(mean=MEAN, std=STD)
    train_classifier(model, load_dataset("digits:train"), epochs=8, seed=0, input_transform=normalizer(spec))
    path = tmp_path_factory.mktemp("normalized") / "weights.pt"
    torch.save(model.state_dict(), path)
    return path


def test_weights_trained_behind_a_normalization_are_refused_with_both_choices(
    cli, digits_with_training_normalization, normalized_checkpoint, tmp_path
):
    out = tmp_path / "b"
    args = ["export", normalized_checkpoint, "--arch", "digits_cnn", "--precision", "int8", "--calib", "digits:train"]
    code, _, err = cli(*args, "-o", out)
    assert code == 2 and not out.exists()
    line = err.strip().splitlines()[-1]
    assert "raw [0, 1] inputs" in line and "--mean 0.5 --std 0.05" in line and "--mean 0 --std 1" in line
    # the user says which: the export goes through and states the normalization it folded in
    code, stdout, _ = cli(*args, "-o", out, "--mean", "0.5", "--std", "0.05")
    assert code == 0 and "normalization folded in: mean 0.5, std 0.05" in stdout
    code, stdout, _ = cli("eval", out, "--data", "digits:test", "--json")
    assert code == 0 and json.loads(stdout)["accuracy"] > 0.9


def test_weights_trained_on_raw_inputs_raise_no_alarm(
    cli, digits_with_training_normalization, digits_checkpoint, tmp_path
):
    out = tmp_path / "b"
    code, stdout, _ = cli(
        "export", digits_checkpoint, "--arch", "digits_cnn", "--precision", "int8", "--calib", "digits:train", "-o", out
    )
    assert code == 0 and "no normalization: the model takes raw [0,1] images" in stdout


class _LostByOneRange(nn.Module):
    """The trained digits model, then a linear layer whose input carries one huge constant feature: per-tensor
    INT8 ranges of that input round every real logit to zero, so the graph loses the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Linear(11, 10, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[:, :10] = torch.eye(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return self.head(torch.cat([logits, torch.full_like(logits[:, :1], 1e5)], 1))


def test_an_int8_graph_that_lost_the_model_is_refused_and_nothing_is_written(digits_checkpoint, tmp_path):
    model = zoo.get("digits_cnn").build()
    model.load_state_dict(torch.load(digits_checkpoint, weights_only=True))
    spec = zoo.get("digits_cnn").spec
    source = {"file": "lost.pt", "format": "test", "sha256": "", "arch": None, "layer_dtypes": {}}
    loaded = LoadedModel(_LostByOneRange(model).eval(), spec, source)
    calib = load_dataset("digits:train")
    options = ExportOptions("int8", calibration=CalibrationOptions(n=64, method="minmax"))
    with pytest.raises(UserError, match=r"agrees with the torch model on only .*no bundle was written"):
        export_bundle(loaded, tmp_path / "lost", options, calib=calib)
    assert not (tmp_path / "lost").exists()
    # the same model in float exports: the check measures the graph, not the model
    assert export_bundle(loaded, tmp_path / "fp32", ExportOptions("fp32"), calib=calib).path.exists()
