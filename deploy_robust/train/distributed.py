"""torch.distributed helpers: the same training code runs alone or under `torchrun`.

`init_from_env()` joins the process group that `torchrun` describes in the environment
(WORLD_SIZE, RANK, MASTER_ADDR, ...): gloo on CPU, NCCL when every process has a GPU.
Without it every helper here is a no-op, and training is the single-process loop.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from deploy_robust.errors import UserError


def init_from_env() -> bool:
    """Join the process group `torchrun` set up; False when this is a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


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


def barrier() -> None:
    if active():
        dist.barrier()
