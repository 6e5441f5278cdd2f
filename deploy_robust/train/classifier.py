"""Plain supervised training of a classifier on a Dataset (adversarial training builds on this loop)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.progress import progress
from deploy_robust.seeding import seed_everything


def train_classifier(model: nn.Module, dataset: Dataset, *, epochs: int = 30, batch_size: int = 64,
                     lr: float = 3e-3, seed: int = 0, input_transform: nn.Module | None = None) -> list[float]:
    """Adam with a cosine schedule; returns the mean loss of each epoch. Same seed, same weights.

    `input_transform` maps [0, 1] images to what `model` takes (e.g. its normalization).
    """
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(dataset.as_float())
    labels = torch.from_numpy(dataset.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(dataset) / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    transform = input_transform or nn.Identity()
    losses = []
    model.train()
    for _ in progress(range(epochs), total=epochs, desc="train"):
        order = torch.from_numpy(rng.permutation(len(dataset)))
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(transform(images[index])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        losses.append(total / len(dataset))
    model.eval()
    return losses
