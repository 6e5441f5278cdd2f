"""`deploy-robust train`: a model file that the rest of the tool reads, and DDP on two CPU processes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deploy_robust.data import load_dataset
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import MODEL_KEY


def test_train_writes_a_model_file_that_loads_without_arch(cli, tmp_path):
    out = tmp_path / "digits_adv.pt"
    code, text, err = cli(
        "train",
        "--arch",
        "digits_cnn",
        "--data",
        "digits:train",
        "--test",
        "digits:test",
        "--adv",
        "fgsm",
        "--eps",
        "0.1",
        "--epochs",
        "2",
        "--eval-n",
        "100",
        "-o",
        str(out),
    )
    assert code == 0, err
    doc = torch.load(out, weights_only=True)
    assert doc[MODEL_KEY]["training"]["adv"] == "fgsm" and doc[MODEL_KEY]["training"]["evaluation"]["n"] == 100
    loaded = load_model(out)
    assert loaded.source["arch"] == "digits_cnn" and loaded.source["format"] == "trained_model"
    assert "clean" in text and "PGD-20" in text


def test_adversarial_training_needs_an_eps(cli, tmp_path):
    code, _, err = cli(
        "train", "--arch", "digits_cnn", "--data", "digits:train", "--adv", "pgd", "-o", str(tmp_path / "m.pt")
    )
    assert code == 2 and "--eps" in err and not (tmp_path / "m.pt").exists()


def _train(args, tmp_path, name, processes):
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_port",
            str(29500 + os.getpid() % 1000),
        ]
        if processes > 1
        else [sys.executable]
    )
    out = tmp_path / f"{name}.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="1")
    result = subprocess.run(
        [*launcher, "-m", "deploy_robust", "train", *args, "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out, weights_only=True)


@pytest.mark.slow  # two training processes
def test_ddp_on_two_gloo_processes_matches_one_process_on_the_global_batch(tmp_path):
    data = load_dataset("digits:train").take(1280)  # 20 global batches of 64: every rank gets 32 images
    np.savez(tmp_path / "train.npz", x=data.as_float(), y=data.labels)
    common = [
        "--arch",
        "digits_cnn",
        "--data",
        str(tmp_path / "train.npz"),
        "--adv",
        "none",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--seed",
        "4",
    ]
    two = _train([*common, "--batch", "32"], tmp_path, "ddp", 2)
    one = _train([*common, "--batch", "64"], tmp_path, "single", 1)
    assert two[MODEL_KEY]["training"]["processes"] == 2
    for key, w in one["state_dict"].items():
        assert torch.allclose(two["state_dict"][key], w, atol=2e-4), key
    losses_two, losses_one = two[MODEL_KEY]["training"]["losses"], one[MODEL_KEY]["training"]["losses"]
    assert np.allclose(losses_two, losses_one, atol=1e-3) and losses_one[1] < losses_one[0]
