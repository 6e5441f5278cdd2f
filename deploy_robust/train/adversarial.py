"""Adversarial examples for training: FGSM with a random start (Wong, Rice and Kolter 2020).

A perturbation function maps (model, images, labels) to perturbed images in [0, 1];
`train_classifier(..., perturb=...)` trains on its output instead of the clean batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fgsm_random_start(eps: float, step: float | None = None) -> Perturb:
    """L-inf FGSM from a uniform random point in the eps-ball, step 1.25 eps by default."""
    step = 1.25 * eps if step is None else step

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = torch.empty_like(x).uniform_(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        return (x + delta).clamp(0, 1).detach()

    return perturb
