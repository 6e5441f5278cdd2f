import pytest
import torch

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel, load_model
from deploy_robust.transforms.gdws.checkpoint import describe_plan, save_gdws_checkpoint
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model


@pytest.fixture
def rewritten():
    torch.manual_seed(0)
    entry = zoo.get("digits_cnn")
    loaded = LoadedModel(entry.build().eval(), entry.spec, {"file": "d", "arch": "digits_cnn"})
    return rewrite_model(loaded, GDWSRequest(budget=0.5))


def test_a_gdws_checkpoint_loads_back_as_the_same_rewritten_network(tmp_path, rewritten):
    model, plan = rewritten
    path = save_gdws_checkpoint(tmp_path / "g.pt", model.module, "digits_cnn", model.spec, plan)
    back = load_model(path)
    x = torch.rand(4, 1, 8, 8)
    assert back.source["format"] == "gdws_checkpoint" and back.transforms["gdws"] == plan.to_json()
    assert torch.allclose(back.reference()(x), model.reference()(x))
    assert "GDWS (budget 0.5)" in describe_plan(plan.to_json())


def test_a_model_without_an_architecture_cannot_be_saved_weights_only(tmp_path, rewritten):
    model, plan = rewritten
    with pytest.raises(UserError, match="needs the model's architecture"):
        save_gdws_checkpoint(tmp_path / "g.pt", model.module, None, model.spec, plan)
