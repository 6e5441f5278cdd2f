import pytest
import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.export import export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier
from tests.conftest import built_once


class RoundInput(nn.Module):
    """A gradient-masking 'defense': the input is rounded to 16 levels (Round in the graph: zero gradient).

    The levels are 1/15 apart, finer than the eps of the tests, so the rounding hides gradients
    without adding real robustness: the textbook case of gradient masking."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 15) / 15)


class NoisyInput(nn.Module):
    """A stochastic model: Gaussian noise on the input, fresh on every run (RandomNormalLike in ONNX)."""

    def __init__(self, model: nn.Module, sigma: float = 0.3) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    def build(path):
        seed_everything(0)
        trained = zoo.get("digits_cnn").build()
        train_classifier(trained, load_dataset("digits:train"), epochs=15, seed=0)
        torch.save(trained.state_dict(), path)

    model = zoo.get("digits_cnn").build()
    model.load_state_dict(torch.load(built_once(tmp_path_factory, "digits-15-epochs.pt", build), weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def digits_test():
    return load_dataset("digits:test")


def _bundle(module, root, name):
    spec = zoo.get("digits_cnn").spec
    loaded = LoadedModel(
        module, spec, {"file": name, "format": "test", "sha256": "", "arch": "digits_cnn", "layer_dtypes": {}}
    )
    return export_bundle(loaded, root / name)


@pytest.fixture(scope="session")
def digits_bundles(tmp_path_factory, digits_model):
    root = tmp_path_factory.mktemp("verify")
    return {
        "plain": _bundle(digits_model, root, "plain"),
        "masked": _bundle(RoundInput(digits_model), root, "masked"),
        "noisy": _bundle(NoisyInput(digits_model), root, "noisy"),
    }
