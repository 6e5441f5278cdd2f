"""The process group a command runs in: alone, or as one of N ranks that `torchrun` (or `verify --workers`) started.

`init_from_env()` joins the group the environment describes (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT, as
torchrun sets them): gloo on CPU, NCCL when every process has a GPU. Without it every helper here is a no-op and
the command is the single-process one.

Ranks exchange numpy arrays only, as `.npz` bytes loaded with `allow_pickle=False`: unlike torch's object
collectives, no rank ever unpickles what another host sent.

Trust (docs/trust.md, "Distributed verify"): `verify --workers` opens no network listener for its store: the
ranks meet in a FileStore inside a 0700 temporary folder of the parent ($DEPLOY_ROBUST_GROUP_STORE), and gloo's
own connections are pinned to the loopback interface. Every exchanged payload is sealed with an HMAC-SHA256 under
a per-run secret ($DEPLOY_ROBUST_GROUP_SECRET, which `--workers` draws for each run and torchrun users set to the
same random value on every host), bound to the collective's sequence number and the sending rank, so data written
into the group by a process without the secret (or replayed from an earlier step) is refused, never merged.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from deploy_robust.errors import UserError, first_line
from deploy_robust.group_seal import LAUNCHED_AT_ENV, SECRET_ENV, STORE_ENV, group_secret, seal, unseal

# How long a rank waits for the others at a collective: a verify shard can take long on a slow host.
TIMEOUT = timedelta(hours=6)

_sequence = 0  # collectives so far: every rank calls them in the same order


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group the environment describes; False when this is a single process. `backend`: gloo
    or nccl; by default NCCL when this process has a GPU (training's gradients), else gloo. Every rank must ask
    for the same one: verify, which exchanges small arrays, always asks for gloo."""
    if not launched_by_env() or not dist.is_available():
        return False
    if not dist.is_initialized():
        global _sequence
        _sequence = 0
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        store_path = os.environ.get(STORE_ENV)
        if store_path:  # `--workers`: one machine, a private folder, no listener
            world, me = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
            dist.init_process_group(
                backend, store=dist.FileStore(store_path, world), rank=me, world_size=world, timeout=TIMEOUT
            )
        else:
            dist.init_process_group(backend, timeout=TIMEOUT)
    return True


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def launched_by_env() -> bool:
    """Whether this process is one rank of several (torchrun or `--workers` set WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def pin_local_gpu() -> None:
    """Give this rank the GPU of its LOCAL_RANK (of those CUDA_VISIBLE_DEVICES lists, when set), before anything
    touches CUDA: one GPU per rank on a GPU host; nothing changes on a host without one."""
    local = os.environ.get("LOCAL_RANK")
    if local is None:
        return
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not listed:
        os.environ["CUDA_VISIBLE_DEVICES"] = local
    elif int(local) < len(listed):
        os.environ["CUDA_VISIBLE_DEVICES"] = listed[int(local)]


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def seconds_since_launch() -> float | None:
    """Seconds since `--workers` started this group's processes (their start-up included); None when this process
    was not started that way."""
    try:
        return time.time() - float(os.environ[LAUNCHED_AT_ENV])
    except (KeyError, ValueError):
        return None


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_world_size() -> int:
    """Processes of this group on this host (torchrun's LOCAL_WORLD_SIZE; the whole group when unset)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


_QUEUES = itertools.count()  # every rank opens its queues in the same order, so the n-th has the same key


def work_queue(count: int) -> Iterator[int]:
    """The indices 0..count-1, each handed to exactly one rank, as the ranks ask for the next: a rank that
    finishes a cheap item takes the next one at once, so the ranks finish together (alone: 0..count-1).
    The group's store counts atomically; where there is none, rank r takes the indices i % world == r."""
    key = f"deploy-robust.work-queue.{next(_QUEUES)}"  # a key in the group's store, not a path
    store = _default_store() if active() else None
    if store is None:
        yield from (i for i in range(count) if i % world_size() == rank())
        return
    while (i := int(store.add(key, 1)) - 1) < count:
        yield i


def _default_store():
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def barrier() -> None:
    if active():
        dist.barrier()


def leave() -> None:
    """Leave the group (the end of a command); a no-op when alone."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    """Where collectives' tensors must live: the rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_arrays(local: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every rank's arrays, in rank order, on every rank (alone: `[local]`)."""
    if not active():
        return [local]
    global _sequence
    sequence, secret = _sequence, group_secret()
    _sequence += 1
    if secret is None and sequence == 0 and rank() == 0:
        print(
            f"deploy-robust: warning: {SECRET_ENV} is not set, so what the ranks exchange is not authenticated: "
            "set it to the same random hex value on every rank (python -c 'import secrets; "
            "print(secrets.token_hex(32))')",
            file=sys.stderr,
        )
    buffer = io.BytesIO()
    np.savez(buffer, **local)
    sealed = seal(buffer.getvalue(), sequence, rank(), secret)
    payload = torch.frombuffer(bytearray(sealed), dtype=torch.uint8).to(_device())
    sizes = [torch.zeros(1, dtype=torch.int64, device=payload.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([payload.numel()], dtype=torch.int64, device=payload.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=payload.device)
    padded[: payload.numel()] = payload
    parts = [torch.empty(longest, dtype=torch.uint8, device=payload.device) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    out = []
    for sender, (part, size) in enumerate(zip(parts, sizes)):
        raw = unseal(part[: int(size.item())].cpu().numpy().tobytes(), sequence, sender, secret)
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            out.append({k: arrays[k] for k in arrays.files})
    return out


def first_failure(error: str | None) -> str | None:
    """Every rank says whether a step failed on it; returns `rank K: message` of the first that did, or None.
    Each rank calls it at the same point, so a rank that cannot go on fails the whole group in one line
    instead of leaving the others waiting at the next collective."""
    if not active():
        return error
    text = np.frombuffer((error or "").encode(), dtype=np.uint8)
    for index, said in enumerate(all_gather_arrays({"error": text})):
        if said["error"].size:
            return f"rank {index}: {said['error'].tobytes().decode(errors='replace')}"
    return None


@contextmanager
def all_or_none(what: str) -> Iterator[None]:
    """Run the block on every rank; when it fails on any rank, every rank raises one UserError naming the first
    rank that failed and why (a bug also keeps its traceback where it happened). Alone, errors pass through."""
    if not active():
        yield
        return
    error, caught = None, None
    try:
        yield
    except Exception as e:  # noqa: BLE001 -- every rank must hear of it, or the others wait at the next collective
        error, caught = first_line(e), e
    failure = first_failure(error)
    if caught is not None and not isinstance(caught, (UserError, OSError)):
        raise caught  # a bug keeps its traceback on the rank it happened on
    if failure is not None:
        raise UserError(f"{what} failed on {failure}")


def rank_zero_value(value: str) -> str:
    """Rank 0's `value` on every rank (alone: `value`), for choices that must be the same everywhere."""
    if not active():
        return value
    said = all_gather_arrays({"value": np.frombuffer(value.encode(), dtype=np.uint8)})[0]["value"]
    return said.tobytes().decode()
