import stat

import numpy as np

from deploy_robust.verify.resume import BatchCheckpoint, resume_key

SETTINGS = {"suite": "quick", "n": 4}
INPUTS = (np.zeros((2, 1, 2, 2), np.float32), np.array([0, 1]))
RESULT = {"robust": np.array([True, False])}


def test_the_key_is_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(tmp_path / "home"))
    key = resume_key()
    assert key == resume_key() and len(key) == 32
    assert stat.S_IMODE((tmp_path / "home" / "user.key").stat().st_mode) == 0o600


def test_a_batch_is_reused_only_by_its_own_run_index_and_images(tmp_path):
    saved = BatchCheckpoint(tmp_path, SETTINGS, True)
    saved.save(0, INPUTS, RESULT)
    again = BatchCheckpoint(tmp_path, SETTINGS, True)
    assert np.array_equal(again.load(0, INPUTS)["robust"], RESULT["robust"])
    other_images = (INPUTS[0] + 1, INPUTS[1])
    assert again.load(0, other_images) is None and again.rejected == 1
    file = next((tmp_path / ".verify-progress").glob("*/batch-00000.npz"))
    file.rename(file.with_name("batch-00001.npz"))  # moved to another index
    assert again.load(1, INPUTS) is None and again.rejected == 2
    assert BatchCheckpoint(tmp_path, SETTINGS | {"n": 8}, True).load(0, INPUTS) is None  # another run's folder


def test_another_users_key_rejects_the_file(tmp_path, monkeypatch):
    BatchCheckpoint(tmp_path, SETTINGS, True).save(0, INPUTS, RESULT)
    monkeypatch.setenv("DEPLOY_ROBUST_HOME", str(tmp_path / "someone-else"))
    stranger = BatchCheckpoint(tmp_path, SETTINGS, True)
    assert stranger.load(0, INPUTS) is None and stranger.summary() == {"reused_batches": 0, "rejected_batch_files": 1}
