import pytest
import torch

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel
from deploy_robust.transforms.gdws.alphas import AlphaSettings
from deploy_robust.transforms.gdws.layer import GDWSConv2d
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model


def _loaded():
    torch.manual_seed(0)
    entry = zoo.get("digits_cnn")
    return LoadedModel(entry.build().eval(), entry.spec, {"file": "d", "arch": "digits_cnn"})


def test_the_rewrite_leaves_the_input_untouched_and_records_its_plan():
    loaded = _loaded()
    rewritten, plan = rewrite_model(loaded, GDWSRequest(budget=0.5))
    assert not any(isinstance(m, GDWSConv2d) for m in loaded.module.modules())
    assert any(isinstance(m, GDWSConv2d) for m in rewritten.module.modules())
    assert rewritten.transforms["gdws"]["model_macs"]["ratio"] > 1 and plan.budget == 0.5
    with pytest.raises(UserError, match="already GDWS-rewritten"):
        rewrite_model(rewritten, GDWSRequest(budget=0.5))


def test_alphas_are_estimated_from_a_data_spec_at_the_models_shape_and_cached(tmp_path):
    cache = tmp_path / "alphas.json"
    request = GDWSRequest(
        budget=0.5, alphas=cache, alpha_data="digits:train", alpha_settings=AlphaSettings(0.1, "linf", 2, 16, 0)
    )
    messages = []
    _, plan = rewrite_model(_loaded(), request, messages.append)
    assert cache.is_file() and plan.alphas and any("estimating" in m for m in messages)
    _, again = rewrite_model(_loaded(), GDWSRequest(budget=0.5, alphas=cache), messages.append)
    assert "from" in messages[-1] and again.to_json() == plan.to_json()
