import pytest

from deploy_robust.errors import UserError
from deploy_robust.model.arch import CodeTrust, is_code, resolve


def _helper(folder):
    path = folder / "helper.py"
    path.write_text(
        "import torch\n(__import__('pathlib').Path(__file__).parent / 'RAN').write_text('x')\n"
        "def factory(num_classes=10):\n    return torch.nn.Linear(4, num_classes)\n"
    )
    return path


def test_names_and_code_files_are_told_apart():
    assert is_code("net.py:build") and not is_code("resnet18") and not is_code("a:b")
    assert resolve("digits_cnn").name == "digits_cnn"


def test_recorded_code_needs_the_same_file_on_the_command_line_or_trust_code(tmp_path, monkeypatch):
    helper = _helper(tmp_path)
    recorded = f"{helper}:factory"
    with pytest.raises(UserError, match="runs that file.*--trust-code"):
        CodeTrust().resolve_recorded(recorded, "model.pt")
    with pytest.raises(UserError, match="--trust-code"):
        CodeTrust(f"{tmp_path / 'other.py'}:factory").resolve_recorded(recorded, "model.pt")
    with pytest.raises(UserError, match="--trust-code"):
        CodeTrust(f"{helper}:other_factory").resolve_recorded(recorded, "model.pt")
    assert not (tmp_path / "RAN").exists()
    monkeypatch.chdir(tmp_path)
    assert CodeTrust("helper.py:factory").resolve_recorded(recorded, "model.pt").build(3).out_features == 3
    assert (tmp_path / "RAN").exists()  # the user named it: now it runs


def test_trust_code_allows_and_built_in_names_need_nothing(tmp_path):
    helper = _helper(tmp_path)
    assert CodeTrust(trust_code=True).resolve_recorded(f"{helper}:factory", "m.pt").name == "helper.py:factory"
    assert CodeTrust().resolve_recorded("digits_cnn", "m.pt").name == "digits_cnn"
    with pytest.raises(UserError, match="not a name"):
        CodeTrust().resolve_recorded(42, "m.pt")
