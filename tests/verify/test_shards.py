"""deploy_robust.verify.shards: batches taken from one queue as ranks free up, merged in index order on every rank."""

import numpy as np

from deploy_robust import process_group
from deploy_robust.verify.shards import run_sharded, share
from tests.test_process_group import spawn_group


def _batch(index: int) -> dict:
    return {"points": np.arange(index * 4, index * 4 + 4), "seed": np.array(1000 + index)}


def test_alone_a_process_computes_every_batch_in_order():
    assert share(5) == 5
    computed = []
    merged = run_sharded(5, lambda i: computed.append(i) or _batch(i))
    assert computed == [0, 1, 2, 3, 4]
    assert np.concatenate([m["points"] for m in merged]).tolist() == list(range(20))


def _sharded(rank: int, world: int) -> None:
    merged = run_sharded(7, lambda i: _batch(i) | {"by": np.array(process_group.rank())})
    assert np.concatenate([m["points"] for m in merged]).tolist() == list(range(28))  # all, once, in order
    assert [int(m["seed"]) for m in merged] == [1000 + i for i in range(7)]
    assert {int(m["by"]) for m in merged} <= set(range(world))  # each batch from the one rank that took it
    again = run_sharded(4, _batch)  # a second queue starts from batch 0 again
    assert [int(m["seed"]) for m in again] == [1000, 1001, 1002, 1003]
    assert share(7) == 3


def test_the_ranks_share_one_queue_and_every_rank_gets_every_batch_in_order():
    spawn_group(_sharded, 3)
