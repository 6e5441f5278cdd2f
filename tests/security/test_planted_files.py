"""Issue 26, findings 2-5: an attacker who can write into one folder we use (a tune output, the user's
deploy-robust folder, a bundle's progress folder) cannot make us use what they wrote: planted caches, copies,
blobs and keys are refused with one line or recomputed (and counted), and nothing is written through a link."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deploy_robust.errors import UserError
from deploy_robust.private_files import KEY_NAME, sha256_of, user_key
from deploy_robust.verify.resume import BatchCheckpoint, resume_key

INPUTS = (np.zeros((2, 1, 2, 2), np.float32), np.array([0, 1]))
OTHER_UID = 54321


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(path))
    return path


# --- 4. resume keys: only from a folder and a file of this user's that nobody else can write ---------------------


def test_a_key_in_a_world_writable_folder_is_refused(home):
    home.mkdir()
    (home / KEY_NAME).write_bytes(b"k" * 32)
    os.chmod(home, 0o777)
    with pytest.raises(UserError, match="can be written by other users"):
        resume_key()


def test_a_folder_owned_by_another_user_is_refused(home):
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    home.mkdir(mode=0o700)
    os.chown(home, OTHER_UID, OTHER_UID)
    with pytest.raises(UserError, match="belongs to another user"):
        user_key("verify-resume")


def test_a_symlinked_home_and_a_linked_key_are_refused(tmp_path, home):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / KEY_NAME).write_bytes(b"k" * 32)
    home.symlink_to(elsewhere)
    with pytest.raises(UserError, match="is a symbolic link"):
        resume_key()
    home.unlink()
    home.mkdir(mode=0o700)
    (home / KEY_NAME).symlink_to(elsewhere / KEY_NAME)
    with pytest.raises(UserError, match="not a private key file"):
        resume_key()


def test_a_key_others_can_write_is_refused_and_an_own_folder_is_made_private(home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    key = user_key("x")  # our own folder, readable by others: tightened, not refused
    assert oct(home.stat().st_mode & 0o777) == "0o700" and len(key) == 32
    assert oct((home / KEY_NAME).stat().st_mode & 0o777) == "0o600"
    os.chmod(home / KEY_NAME, 0o666)
    with pytest.raises(UserError, match="not a private key file"):
        user_key("x")


def test_a_forged_batch_signed_with_a_planted_key_is_never_used(tmp_path, home):
    """The attack of finding 4: a key planted in a world-writable home signs a batch 'all broken'."""
    home.mkdir()
    (home / KEY_NAME).write_bytes(b"planted-key-0123456789abcdef")
    os.chmod(home, 0o777)
    with pytest.raises(UserError, match="can be written by other users"):
        BatchCheckpoint(tmp_path / "bundle", {"n": 2}, True)


# --- 5. the progress folder is never a link ---------------------------------------------------------------------


def test_a_symlinked_progress_folder_is_refused_and_nothing_is_written_there(tmp_path, home):
    bundle, target = tmp_path / "bundle", tmp_path / "outside"
    bundle.mkdir()
    target.mkdir()
    first = BatchCheckpoint(bundle, {"n": 2}, True)
    first.save(0, INPUTS, {"robust": np.array([True, True])})
    shutil.rmtree(first.dir)
    first.dir.symlink_to(target)
    with pytest.raises(UserError, match="is a symbolic link"):
        BatchCheckpoint(bundle, {"n": 2}, True)
    shutil.rmtree(bundle / ".verify-progress")
    (bundle / ".verify-progress").symlink_to(target)
    with pytest.raises(UserError, match="is a symbolic link"):
        BatchCheckpoint(bundle, {"n": 2}, True)
    with pytest.raises(UserError, match="is a symbolic link"):
        first.save(1, INPUTS, {"robust": np.array([True, True])})
    assert list(target.iterdir()) == []


# --- 3. OpenVINO: no copy on disk, and a blob can only serve the graph it was compiled from ----------------------


def test_a_planted_blob_is_deleted_before_openvino_reads_it(tmp_path, home, digits_bundle):
    pytest.importorskip("openvino")
    from deploy_robust.export import export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.runtimes.base import RuntimeOptions
    from deploy_robust.runtimes.openvino_model import compile_bundle_graph
    from deploy_robust.spec import InputSpec
    from deploy_robust.zoo import get

    import torch

    torch.manual_seed(1)
    foreign = export_bundle(
        LoadedModel(get("digits_cnn").build(), InputSpec((1, 8, 8), 10), {"file": "r"}), tmp_path / "foreign"
    )
    from deploy_robust.bundle import open_bundle

    ours_path = open_bundle(digits_bundle).model_path
    options = RuntimeOptions(cache=True)
    images = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    ours = compile_bundle_graph(ours_path, options)(images)[0]
    theirs = compile_bundle_graph(foreign.model_path, options)(images)[0]
    folders = {p.name: p for p in (home / "openvino-cache").iterdir()}
    assert len(folders) == 2 and not np.allclose(ours, theirs)
    ours_folder, theirs_folder = sorted(folders.values())
    # put the foreign model's blob under every blob name of the other folder (finding 3: B's blob under A's name)
    for a, b in ((ours_folder, theirs_folder), (theirs_folder, ours_folder)):
        blob_b = next(p for p in b.iterdir() if p.suffix == ".blob")
        for blob_a in [p for p in a.iterdir() if p.suffix == ".blob"]:
            shutil.copyfile(blob_b, blob_a)
    again_ours = compile_bundle_graph(ours_path, options)(images)[0]
    again_theirs = compile_bundle_graph(foreign.model_path, options)(images)[0]
    assert np.allclose(again_ours, ours, atol=1e-5) and np.allclose(again_theirs, theirs, atol=1e-5)
    assert not (home / "openvino-widened").exists()


def test_a_symlinked_openvino_cache_folder_receives_nothing(tmp_path, home, digits_bundle):
    pytest.importorskip("openvino")
    from deploy_robust.runtimes.base import RuntimeOptions
    from deploy_robust.runtimes.openvino_model import compile_bundle_graph

    target = tmp_path / "target"
    target.mkdir()
    home.mkdir(mode=0o700)
    (home / "openvino-cache").symlink_to(target)
    with pytest.raises(UserError, match="is a symbolic link"):
        compile_bundle_graph(digits_bundle / "model.onnx", RuntimeOptions(cache=True))
    assert list(target.iterdir()) == []


# --- 2. tune: a planted cache never ships, a linked cache folder receives nothing --------------------------------


def _tune(model, out, *extra):
    command = [
        sys.executable,
        "-m",
        "deploy_robust",
        "tune",
        str(model),
        "--arch",
        "digits_cnn",
        "--calib",
        "digits:train",
        "--data",
        "digits:test",
        "--eps",
        "0.1",
        "--n",
        "40",
        "--final-n",
        "40",
        "--bench-seconds",
        "0.1",
        "--threads",
        "1",
        "--space",
        "int8",
        "--max-robust-drop",
        "0.05",
        "--max-clean-drop",
        "0.05",
        "-o",
        str(out),
        "--json",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ, CI="1"))


@pytest.mark.slow  # two full tunes (~140 s); the signed cache is also fuzzed in make test
def test_a_planted_tune_cache_is_recomputed_and_never_shipped(tmp_path, digits_checkpoint):
    import torch

    from deploy_robust.bundle import open_bundle
    from deploy_robust.zoo import get

    out = tmp_path / "tuned"
    first = _tune(digits_checkpoint, out)
    assert first.returncode == 0, first.stderr
    honest_sha = open_bundle(out / "best").manifest.model.sha256
    # the attacker: a random-weights model exported in place of the cached INT8 bundle, measurements forged
    torch.manual_seed(7)
    foreign_file = tmp_path / "random.pt"
    torch.save(get("digits_cnn").build().state_dict(), foreign_file)
    cached = out / "cache" / "bundles" / "int8"
    shutil.rmtree(cached)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy_robust",
            "export",
            str(foreign_file),
            "--arch",
            "digits_cnn",
            "--precision",
            "int8",
            "--calib",
            "digits:train",
            "-o",
            str(cached),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, CI="1"),
    )
    assert done.returncode == 0, done.stderr
    measurements = out / "cache" / "measurements.json"
    forged = json.loads(measurements.read_text())
    foreign_sha = open_bundle(cached).manifest.model.sha256
    forged["entries"]["bundle/int8"] = sha256_of(cached / "manifest.json")  # vouch for the foreign bundle
    measurements.write_text(json.dumps(forged))
    again = _tune(digits_checkpoint, out)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["cache"]["rejected_files"] == 1 and doc["cache"]["recomputed_bundles"] >= 1
    assert open_bundle(out / "cache" / "bundles" / "int8").manifest.model.sha256 != foreign_sha
    assert open_bundle(out / "best").manifest.model.sha256 != foreign_sha
    assert open_bundle(out / "best").manifest.model.sha256 == honest_sha  # the same honest pick


def test_a_symlinked_tune_cache_is_refused_and_receives_nothing(tmp_path, digits_checkpoint):
    out, target = tmp_path / "tuned", tmp_path / "target"
    out.mkdir()
    target.mkdir()
    (out / "cache").symlink_to(target)
    done = _tune(digits_checkpoint, out)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "is a symbolic link" in done.stderr and list(target.iterdir()) == []
