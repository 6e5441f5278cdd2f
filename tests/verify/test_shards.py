"""deploy_robust.verify.shards: round-robin batches, merged in index order on every rank."""

import numpy as np

from deploy_robust.verify.shards import owned, run_sharded
from tests.test_process_group import spawn_group


def _batch(index: int) -> dict:
    return {"points": np.arange(index * 4, index * 4 + 4), "seed": np.array(1000 + index)}


def test_alone_a_process_computes_every_batch_in_order():
    assert owned(5) == [0, 1, 2, 3, 4]
    merged = run_sharded(5, _batch)
    assert np.concatenate([m["points"] for m in merged]).tolist() == list(range(20))


def _sharded(rank: int, world: int) -> None:
    computed = []
    merged = run_sharded(7, lambda i: computed.append(i) or _batch(i))
    assert computed == [i for i in range(7) if i % world == rank]  # only its own batches
    assert np.concatenate([m["points"] for m in merged]).tolist() == list(range(28))  # all, once, in order
    assert [int(m["seed"]) for m in merged] == [1000 + i for i in range(7)]


def test_each_rank_computes_its_share_and_gets_every_batch_in_order():
    spawn_group(_sharded, 3)
