from pathlib import Path

from deploy_robust.home import user_home


def test_the_folder_follows_deploy_robust_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(tmp_path / "a"))
    assert user_home() == tmp_path / "a"
    monkeypatch.delenv("DEPLOY_ROBUST_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_home() == tmp_path / "xdg" / "deploy-robust"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_home() == Path.home() / ".cache" / "deploy-robust"
