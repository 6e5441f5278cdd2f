import torch

from deploy_robust import zoo
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import save_model_file
from deploy_robust.transforms.dq.checkpoint import KIND, describe_config, trained_grid_form
from deploy_robust.transforms.dq.model import is_dq_model, prepare_dq


def test_a_dq_model_file_is_rebuilt_with_its_quantizers_and_exports_on_its_grid(tmp_path):
    torch.manual_seed(0)
    entry = zoo.get("digits_cnn")
    dq, config = prepare_dq(entry.build().eval(), 4, 4, torch.rand(16, 1, 8, 8))
    path = save_model_file(tmp_path / "dq.pt", dq, "digits_cnn", entry.spec, {"epochs": 0}, config.to_json())
    loaded = load_model(path)
    assert is_dq_model(loaded.module) and loaded.source["format"] == "dq_model"
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(loaded.module(x), dq.eval()(x))
    form = trained_grid_form(loaded.module)
    assert form is not None and trained_grid_form(entry.build()) is None
    assert not KIND.float_export and "w4a4" in describe_config(loaded.transforms["dq"])


def test_a_plain_trained_file_is_the_same_format_without_dq(tmp_path):
    entry = zoo.get("digits_cnn")
    path = save_model_file(tmp_path / "m.pt", entry.build(), "digits_cnn", entry.spec, {"epochs": 1})
    loaded = load_model(path)
    assert loaded.source["format"] == "trained_model" and not loaded.transforms
