"""deploy_robust.process_group: alone every helper is a no-op; in a real gloo group of spawned processes, arrays
travel as npz (no pickles), failures reach every rank, and rank 0's choice is everyone's."""

import os
import socket

import numpy as np
import pytest
import torch.multiprocessing as mp

from deploy_robust import process_group
from deploy_robust.errors import UserError


def test_alone_every_helper_is_the_single_process_answer(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not process_group.init_from_env() and not process_group.active()
    assert (process_group.world_size(), process_group.rank()) == (1, 0)
    assert process_group.all_gather_arrays({"a": np.arange(3)})[0]["a"].tolist() == [0, 1, 2]
    assert process_group.first_failure(None) is None and process_group.first_failure("x") == "x"
    assert process_group.rank_zero_value("contiguous") == "contiguous"
    with pytest.raises(UserError, match="^bad$"):  # alone, an error passes through unchanged
        with process_group.all_or_none("loading"):
            raise UserError("bad")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_group(fn, world: int, *args) -> None:
    """Run fn(rank, world, *args) in `world` spawned processes joined in one gloo group on loopback."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    mp.spawn(_join_and_run, args=(world, fn, args), nprocs=world, join=True)


def _join_and_run(rank: int, world: int, fn, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    assert process_group.init_from_env("gloo")
    try:
        fn(rank, world, *args)
    finally:
        process_group.leave()


def _exchange(rank: int, world: int) -> None:
    got = process_group.all_gather_arrays(
        {"mine": np.full(rank + 1, rank, dtype=np.int16), "flag": np.array(rank % 2 == 0)}
    )
    assert [g["mine"].tolist() for g in got] == [[r] * (r + 1) for r in range(world)]
    assert [bool(g["flag"]) for g in got] == [r % 2 == 0 for r in range(world)]
    assert process_group.rank_zero_value(f"choice-of-{rank}") == "choice-of-0"
    assert process_group.first_failure(None) is None
    said = process_group.first_failure("no bundle here" if rank == world - 1 else None)
    assert said == f"rank {world - 1}: no bundle here"
    with pytest.raises(UserError, match=f"loading failed on rank {world - 1}: missing"):
        with process_group.all_or_none("loading"):
            if rank == world - 1:
                raise FileNotFoundError("missing")


@pytest.mark.slow  # a process group of child processes (~12 s)
def test_ranks_exchange_arrays_choices_and_failures():
    spawn_group(_exchange, 3)
