"""deploy_robust.private_files: checked folders and signed, sealed caches (attacks in tests/security)."""

import hashlib
import json
import os

import pytest

from deploy_robust.errors import UserError
from deploy_robust.private_files import SealedFolder, check_folder


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_sealed_folder_admits_only_what_it_recorded(tmp_path, home):
    folder = SealedFolder(tmp_path / "cache", "test")
    (folder.path / "a.blob").write_bytes(b"A")
    folder.seal()
    assert SealedFolder(tmp_path / "cache", "test").admit() == 0
    (folder.path / "a.blob").write_bytes(b"B")  # swapped
    (folder.path / "planted.blob").write_bytes(b"C")  # planted
    (folder.path / "link.blob").symlink_to(tmp_path / "nowhere")
    again = SealedFolder(tmp_path / "cache", "test")
    assert again.admit() == 3 and [p.name for p in again.path.iterdir()] == [".index.json"]
    (folder.path / "planted.blob").write_bytes(b"C")
    index = json.loads((folder.path / ".index.json").read_text())
    index["entries"]["planted.blob"] = hashlib.sha256(b"C").hexdigest()  # vouched for without the key
    (folder.path / ".index.json").write_text(json.dumps(index))
    assert SealedFolder(tmp_path / "cache", "test").admit() == 1


def test_check_folder_refuses_a_file_and_a_world_writable_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        check_folder(tmp_path / "f")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by all and not sticky: a folder in it can be swapped
    with pytest.raises(UserError, match="which other users can write to"):
        check_folder(shared / "cache")
