import pytest

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.ingest import LoadedModel
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier
from tests.conftest import built_once


@pytest.fixture(scope="session")
def digits_file(tmp_path_factory):
    """The digits CNN, trained as the demo trains it, saved as a model file `tune` reads."""
    from deploy_robust.model.model_file import save_model_file

    def build(path):
        seed_everything(0)
        entry = zoo.get("digits_cnn")
        model = entry.build()
        train_classifier(model, load_dataset("digits:train"), epochs=15, seed=0)
        save_model_file(path, model, "digits_cnn", entry.spec, {"epochs": 15})

    return built_once(tmp_path_factory, "digits-model-file.pt", build)


@pytest.fixture(scope="session")
def digits_loaded(digits_file):
    from deploy_robust.ingest import load_model

    loaded = load_model(digits_file)
    assert isinstance(loaded, LoadedModel)
    return loaded
