"""Adversarial examples for training: PGD (Madry et al. 2018) and FGSM with a random start (Wong et al. 2020).

A perturbation function maps (model, images, labels) to perturbed images in [0, 1];
`train_classifier(..., perturb=...)` trains on its output instead of the clean batch.
Random starts use torch's global generator, which the training loop seeds per epoch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deploy_robust.errors import UserError

Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _ascend(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, eps: float, step: float
) -> torch.Tensor:
    """One signed-gradient ascent step on the cross-entropy, projected to the eps-ball and [0, 1]."""
    delta = delta.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    (grad,) = torch.autograd.grad(loss, delta)
    delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1) - x


def _random_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) - x


def fgsm_random_start(eps: float, step: float | None = None) -> Perturb:
    """L-inf FGSM from a uniform random point in the eps-ball, step 1.25 eps by default."""
    step = 1.25 * eps if step is None else step

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + _ascend(model, x, y, _random_start(x, eps), eps, step)).detach()

    return perturb


def pgd_training(eps: float, steps: int = 7, step_size: float | None = None) -> Perturb:
    """L-inf PGD from a uniform random start: `steps` steps of 2.5 eps / steps by default."""
    if steps < 1:
        raise UserError(f"--steps must be >= 1; got {steps}")
    step_size = 2.5 * eps / steps if step_size is None else step_size

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = _random_start(x, eps)
        for _ in range(steps):
            delta = _ascend(model, x, y, delta, eps, step_size)
        return (x + delta).detach()

    return perturb


def make_perturb(kind: str, eps: float, steps: int = 7, step_size: float | None = None) -> Perturb | None:
    """'none', 'fgsm' (FGSM with random start) or 'pgd' (PGD-`steps`); eps on the [0, 1] image scale."""
    if kind == "none":
        return None
    if eps <= 0:
        raise UserError(f"adversarial training needs --eps > 0; got {eps}")
    if kind == "fgsm":
        return fgsm_random_start(eps, step_size)
    if kind == "pgd":
        return pgd_training(eps, steps, step_size)
    raise UserError(f"--adv must be none, fgsm or pgd; got {kind}")
