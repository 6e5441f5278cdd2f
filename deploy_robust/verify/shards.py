"""Verification work split across the ranks of a process group, merged exactly.

The unit of work is a batch of the global partition: batch i holds points i*B .. i*B+B-1 of the run, whatever
the number of processes, and every random draw in it derives from the global seed and i (see
`protocol._verify_batch`). The ranks take the batches from one queue as they free up
(`process_group.work_queue`): a batch whose points all broke early costs a fraction of one whose points
survive every attack, so a fixed split left one rank waiting for the other. Every rank receives every
batch's arrays, which it merges in index order. So the merged arrays, and every figure computed from them, are the same
for 1, 2 or 64 processes and for any order in which the ranks finish. A batch that two ranks both claim,
or that none returns, fails the run instead of being counted twice or not at all.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from deploy_robust import process_group

Arrays = dict[str, np.ndarray]


def share(count: int) -> int:
    """About how many of `count` batches this rank computes (for a progress bar)."""
    return -(-count // process_group.world_size())


def run_sharded(count: int, compute: Callable[[int], Arrays]) -> list[Arrays]:
    """`compute(i)` for this rank's batches; every rank gets all `count` results, in index order."""
    local = {i: compute(i) for i in process_group.work_queue(count)}
    if not process_group.active():
        return [local[i] for i in range(count)]
    flat = {f"{i}/{key}": value for i, arrays in local.items() for key, value in arrays.items()}
    merged: dict[int, Arrays] = {}
    claimed: dict[int, int] = {}
    for sender, part in enumerate(process_group.all_gather_arrays(flat)):
        for name, value in part.items():
            index, key = name.split("/", 1)
            i = int(index)
            if claimed.setdefault(i, sender) != sender:
                raise RuntimeError(f"batch {i} came from ranks {claimed[i]} and {sender}")
            merged.setdefault(i, {})[key] = value
    missing = sorted(set(range(count)) - set(merged))
    if missing:
        raise RuntimeError(f"no rank returned batches {missing[:8]}")
    return [merged[i] for i in range(count)]
