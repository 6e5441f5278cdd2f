import pytest
import torch

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    """A digits_cnn state_dict trained for a few seconds: a real model to defend."""
    seed_everything(0)
    model = zoo.get("digits_cnn").build()
    train_classifier(model, load_dataset("digits:train"), epochs=10, seed=0)
    path = tmp_path_factory.mktemp("defenses") / "digits.pt"
    torch.save(model.state_dict(), path)
    return path
