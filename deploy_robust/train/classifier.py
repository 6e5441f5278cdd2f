"""Supervised classifier training on a Dataset: plain, adversarial, regularized, resumable, distributed.

One loop serves every trainer in the project (the demo, EMPIR members, `deploy-robust train`,
Defensive Quantization fine-tuning). Determinism: epoch e draws its batch order and its
torch random numbers (random starts, crops, flips) from seeds derived from (seed, e), so a
run resumed from its checkpoint after epoch e reproduces the uninterrupted run exactly.

Distributed: when torch.distributed is initialized (e.g. under `torchrun`), every process
walks the same global batch order and takes its own contiguous slice of each global batch
(`batch_size` images per process); DistributedDataParallel averages the gradients, so the
update equals one process training on the whole global batch. Adversarial examples are
crafted on the unwrapped model (no gradient synchronization for the attack).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.data import Dataset
from deploy_robust.progress import progress
from deploy_robust.seeding import seed_everything
from deploy_robust.train import distributed
from deploy_robust.train.adversarial import Perturb

Penalty = Callable[[nn.Module], torch.Tensor]
_EPOCH_SEED_STRIDE = 1_000_003


def train_classifier(model: nn.Module, dataset: Dataset, *, epochs: int = 30, batch_size: int = 64,
                     lr: float = 3e-3, seed: int = 0, input_transform: nn.Module | None = None,
                     augment: bool = False, perturb: Perturb | None = None, penalty: Penalty | None = None,
                     checkpoint: str | Path | None = None, resume: bool = False,
                     on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Adam with a one-cycle schedule; returns the mean loss of each epoch. Same seed, same weights.

    `input_transform` maps [0, 1] images to what `model` takes (e.g. its normalization).
    `augment`: random crops (4-pixel zero padding) and horizontal flips, as in CIFAR training.
    `perturb`: train on adversarial examples of each batch (`deploy_robust.train.adversarial`).
    `penalty`: a term added to the loss, computed from `model` (e.g. the DQ Lipschitz regularizer).
    `checkpoint`: written after every epoch (weights, optimizer, schedule, losses); with `resume`,
    training continues from it when it exists.
    """
    seed_everything(seed)
    world, rank = distributed.world_size(), distributed.rank()
    images = torch.from_numpy(dataset.as_float())
    labels = torch.from_numpy(dataset.labels)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    global_batch = batch_size * world
    steps = epochs * int(np.ceil(len(dataset) / global_batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    classifier = nn.Sequential(input_transform, model) if input_transform is not None else model
    device = next(model.parameters()).device  # the caller places the model (CPU, or CUDA when present)
    classifier.to(device)
    trained = distributed.wrap(classifier)
    losses: list[float] = []
    first_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        losses = _load_state(checkpoint, model, optimizer, schedule)
        first_epoch = len(losses)
    step = _Step(model, classifier, trained, optimizer, schedule, perturb, penalty)
    model.train()
    for epoch in progress(range(first_epoch, epochs), total=epochs - first_epoch, desc="train"):
        epoch_seed = seed * _EPOCH_SEED_STRIDE + epoch
        torch.manual_seed(epoch_seed * world + rank)  # the attack's random starts and the crops differ per process
        order = torch.from_numpy(np.random.default_rng(epoch_seed).permutation(len(dataset)))
        total = torch.zeros(2, dtype=torch.float64)  # summed loss, images seen
        for start in range(0, len(order), global_batch):
            batch = order[start:start + global_batch]
            index = batch[rank * len(batch) // world:(rank + 1) * len(batch) // world]
            x, y = images[index], labels[index]
            if augment:
                x = crop_and_flip(x)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            total += torch.tensor([step(x, y) * len(index), len(index)], dtype=torch.float64)
        distributed.all_reduce_sum(total, device)
        losses.append(float(total[0] / total[1]))
        if checkpoint is not None and rank == 0:
            _save_state(checkpoint, model, optimizer, schedule, losses)
        distributed.barrier()
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    model.eval()
    return losses


def _save_state(path: str | Path, model: nn.Module, optimizer, schedule, losses: list[float]) -> None:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "losses": losses}, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(Path(path), buffer.getvalue())


class _Step:
    """One optimizer step on a batch (adversarial examples first, with `perturb`); returns the batch's mean loss."""

    def __init__(self, model, classifier, trained, optimizer, schedule, perturb, penalty) -> None:
        self.model, self.classifier, self.trained = model, classifier, trained
        self.optimizer, self.schedule, self.perturb, self.penalty = optimizer, schedule, perturb, penalty

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self.perturb is not None:
            x = self.perturb(self.classifier, x, y)
        loss = F.cross_entropy(self.trained(x), y)
        value = loss.item()
        if self.penalty is not None:
            loss = loss + self.penalty(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        return value


def _load_state(path: str | Path, model: nn.Module, optimizer, schedule) -> list[float]:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return [float(v) for v in state["losses"]]


def crop_and_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """A random crop of each zero-padded image, and a horizontal flip of half of them (torch RNG)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n) < 0.5
    out[flip] = out[flip].flip(3)
    return out
