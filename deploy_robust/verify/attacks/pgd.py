"""FGSM (Goodfellow et al. 2015) and PGD with random restarts (Madry et al. 2018)."""

from __future__ import annotations

import torch

from deploy_robust.verify.threat import ThreatModel
from deploy_robust.verify.attacks.gradient import Best, TorchModel, gradient
from deploy_robust.verify.attacks.losses import LOSSES


def fgsm(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, eot: int = 1) -> torch.Tensor:
    grad, _, _ = gradient(model, x, y, "ce", eot)
    return threat.project(x + threat.step(grad, threat.eps), x)


def pgd(
    model: TorchModel,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 50,
    step_size: float | None = None,
    restarts: int = 1,
    loss: str = "ce",
    eot: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Madry et al. 2018: projected steepest ascent from a random start; best over restarts."""
    step_size = step_size if step_size is not None else 2.5 * threat.eps / steps
    generator = torch.Generator().manual_seed(seed)
    best = Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        xs, ys, run = x[idx], y[idx], Best(x[idx])
        x_adv = threat.random_start(xs, generator)
        for _ in range(steps):
            grad, values, logits = gradient(model, x_adv, ys, loss, eot)
            run.update(x_adv, values, logits, ys)
            x_adv = threat.project(x_adv + threat.step(grad, step_size), xs)
        with torch.no_grad():
            logits = model(x_adv)
        run.update(x_adv, LOSSES[loss](logits, ys), logits, ys)
        best.merge(idx, run)
    return best.x
