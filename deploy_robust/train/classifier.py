"""Plain supervised training of a classifier on a Dataset (adversarial training builds on this loop)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.progress import progress
from deploy_robust.seeding import seed_everything
from deploy_robust.train.adversarial import Perturb


def train_classifier(model: nn.Module, dataset: Dataset, *, epochs: int = 30, batch_size: int = 64,
                     lr: float = 3e-3, seed: int = 0, input_transform: nn.Module | None = None,
                     augment: bool = False, perturb: Perturb | None = None) -> list[float]:
    """Adam with a one-cycle schedule; returns the mean loss of each epoch. Same seed, same weights.

    `input_transform` maps [0, 1] images to what `model` takes (e.g. its normalization).
    `augment`: random crops (4-pixel zero padding) and horizontal flips, as in CIFAR training.
    `perturb`: train on adversarial examples of each batch (`deploy_robust.train.adversarial`).
    """
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(dataset.as_float())
    labels = torch.from_numpy(dataset.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(dataset) / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    classifier = nn.Sequential(input_transform, model) if input_transform is not None else model
    losses = []
    model.train()
    for _ in progress(range(epochs), total=epochs, desc="train"):
        order = torch.from_numpy(rng.permutation(len(dataset)))
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x, y = images[index], labels[index]
            if augment:
                x = crop_and_flip(x)
            if perturb is not None:
                x = perturb(classifier, x, y)
            loss = F.cross_entropy(classifier(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        losses.append(total / len(dataset))
    model.eval()
    return losses


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
