"""`verify --workers N` and torchrun-style ranks: one result whatever the number of processes, a killed rank
redone on rerun with nothing counted twice, and a rank that cannot load the bundle failing every rank."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deploy_robust.cli.workers import without_workers
from deploy_robust.verify.document import per_example
from tests.test_process_group import free_port

# 96 digits points in 12 batches of 8: quick suite, eps sweep, one thread per process, the attack layout fixed
VERIFY = (
    "--data",
    "digits:test",
    "--eps",
    "0.1",
    "--n",
    "96",
    "--batch-size",
    "8",
    "--suite",
    "quick",
    "--threads",
    "1",
    "--attack-layout",
    "contiguous",
    "--json",
)
HOW_IT_RAN = ("seconds", "seconds_total", "seconds_since_launch", "stage_seconds", "resume", "processes", "throughput")


def untimed(doc: dict) -> dict:
    """What the verify found, without how long it took or how many processes found it."""
    out = {k: v for k, v in doc.items() if k not in HOW_IT_RAN}
    out["attacks"] = [{k: v for k, v in a.items() if k != "seconds"} for a in doc["attacks"]]
    return out


def deploy_robust(*args, cwd=None, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy_robust", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or dict(os.environ, CI="1"),
        timeout=600,
        **kw,
    )


@pytest.fixture(scope="module")
def bundle(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("workers") / "digits-int8"
    done = deploy_robust(
        "export", digits_checkpoint, "--arch", "digits_cnn", "--precision", "int8", "--calib", "digits:train", "-o", out
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def alone(bundle):
    done = deploy_robust("verify", bundle, *VERIFY, "--no-resume")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_workers_flag_is_taken_out_of_what_the_workers_run():
    assert without_workers(["verify", "b", "--workers", "4", "--n", "8"]) == ["verify", "b", "--n", "8"]
    assert without_workers(["verify", "--workers=2", "b"]) == ["verify", "b"]


@pytest.mark.parametrize("workers", [2, pytest.param(4, marks=pytest.mark.slow)])  # 4 ranks on 2 cores: slow
def test_any_number_of_processes_gives_the_same_verify_document(bundle, alone, workers):
    done = deploy_robust("verify", bundle, *VERIFY, "--no-resume", "--workers", workers)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["processes"] == workers and alone["processes"] == 1
    # the time since the ranks were started, their start-up included, beside the time inside verify
    assert doc["seconds_since_launch"] > doc["seconds_total"] and "seconds_since_launch" not in alone
    assert "since --workers started the processes" in (bundle / "report.md").read_text()
    # every per-attack and worst-case figure, the per-example outcomes and the eps curve
    assert untimed(doc) == untimed(alone)
    assert (bundle / "verify.json").is_file() and not (bundle / ".verify-progress").exists()


def _rank_env(rank: int, world: int, port: int) -> dict:
    return dict(
        os.environ,
        CI="1",
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        DEPLOY_ROBUST_GROUP_SECRET="5e" * 32,
    )  # as docs/trust.md asks of torchrun users


@pytest.mark.slow  # ranks killed and rerun in child processes (~20 s)
def test_a_killed_rank_is_redone_on_rerun_and_no_point_counts_twice(bundle, alone):
    port = free_port()
    command = [sys.executable, "-m", "deploy_robust", "verify", str(bundle), *VERIFY]
    ranks = [
        subprocess.Popen(command, env=_rank_env(r, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for r in range(2)
    ]
    progress = bundle / ".verify-progress"
    deadline, rank1_done = time.time() + 300, []
    while time.time() < deadline and ranks[1].poll() is None:
        rank1_done = [p for p in progress.glob("*/batch-*.npz") if int(p.stem.split("-")[1]) % 2 == 1]
        if rank1_done:
            break
        time.sleep(0.02)
    ranks[1].send_signal(signal.SIGKILL)  # mid-run: rank 1 owns the 6 odd batches
    ranks[1].wait()
    time.sleep(1)
    ranks[0].kill()  # as torchrun tears down a group whose rank died
    ranks[0].wait()
    kept = sorted(p.name for p in progress.glob("*/batch-*.npz"))
    assert rank1_done and 0 < len(kept) < 12, kept
    done = deploy_robust("verify", bundle, *VERIFY, "--workers", "2")  # the same command, again
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["resume"]["reused_batches"] == len(kept)  # what was finished is not computed again ...
    assert per_example(doc, "robust").size == per_example(doc, "clean").size == 96
    assert untimed(doc) == untimed(alone)  # ... and nothing counts twice


def test_a_rank_that_cannot_load_the_bundle_fails_every_rank_in_one_line(bundle, tmp_path):
    port = free_port()
    elsewhere = tmp_path / "elsewhere"  # rank 1 starts where the relative bundle path leads nowhere
    elsewhere.mkdir()
    relative = os.path.relpath(bundle, bundle.parent.parent)
    command = [sys.executable, "-m", "deploy_robust", "verify", relative, *VERIFY]
    ranks = [
        subprocess.Popen(
            command,
            env=_rank_env(r, 2, port),
            cwd=[bundle.parent.parent, elsewhere][r],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outcomes = [p.communicate(timeout=300) for p in ranks]
    for p, (_, err) in zip(ranks, outcomes):
        assert p.returncode == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "loading the bundle and data failed on rank 1:" in lines[0], err


def test_workers_under_torchrun_is_refused(bundle):
    env = _rank_env(0, 2, free_port())
    done = deploy_robust("verify", bundle, *VERIFY, "--workers", "2", env=env)
    assert done.returncode == 2 and "under torchrun, leave it out" in done.stderr
