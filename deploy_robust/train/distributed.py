"""torch.distributed helpers for training: the same training code runs alone or under `torchrun`.

The process group itself (`init_from_env`, `rank`, `world_size`, `barrier`) is `deploy_robust.process_group`,
re-exported here; without a group every helper is a no-op, and training is the single-process loop.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.process_group import active, barrier, init_from_env, rank, world_size

__all__ = ["active", "all_reduce_sum", "barrier", "init_from_env", "local_device", "rank", "world_size", "wrap"]


def local_device(requested: str = "auto") -> torch.device:
    """'cpu', 'cuda', or 'auto' (CUDA when present); under torchrun, this process's GPU (LOCAL_RANK)."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA GPU (is the CUDA build of torch installed?)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel around `module` when distributed (it also syncs the initial weights)."""
    if not active():
        return module
    device = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def all_reduce_sum(tensor: torch.Tensor, device: torch.device | None = None) -> None:
    """Sum over processes, in place (NCCL reduces CUDA tensors: the value travels through `device`)."""
    if not active():
        return
    on_device = tensor.to(device) if device is not None else tensor
    dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
    tensor.copy_(on_device.cpu())
