import torch

from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import MODEL_KEY, portable_arch, save_model_file
from deploy_robust.spec import InputSpec
from deploy_robust import zoo


def test_a_user_architecture_is_recorded_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text("def build(num_classes):\n    pass\n")
    assert portable_arch("net.py:build") == f"{tmp_path / 'net.py'}:build"
    assert portable_arch("digits_cnn") == "digits_cnn"  # built-in names stay names


def test_saved_model_file_loads_back_with_its_spec_and_weights(tmp_path):
    net = zoo.get("digits_cnn").build()
    spec = InputSpec((1, 8, 8), 10)
    path = save_model_file(tmp_path / "sub" / "m.pt", net, "digits_cnn", spec, {"epochs": 0})
    assert MODEL_KEY in torch.load(path, weights_only=True)
    loaded = load_model(path)
    assert loaded.spec == spec
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.reference()(x), net.eval()(x))
