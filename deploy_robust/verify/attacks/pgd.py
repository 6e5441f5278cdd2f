"""FGSM (Goodfellow et al. 2015) and PGD with random restarts (Madry et al. 2018)."""

from __future__ import annotations

import torch

from deploy_robust.verify.threat import ThreatModel
from deploy_robust.verify.attacks.gradient import Best, Confirm, Retirement, TorchModel, confirm_rows, gradient
from deploy_robust.verify.attacks.losses import LOSSES
from deploy_robust.progress import check_deadline


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
    confirm: Confirm | None = None,
    early_exit: bool = True,
) -> torch.Tensor:
    """Madry et al. 2018: projected steepest ascent from a random start; best over restarts. Inside a run a
    point stops costing steps once broken (`Retirement`; `confirm` checks it on the engine)."""
    step_size = step_size if step_size is not None else 2.5 * threat.eps / steps
    generator = torch.Generator().manual_seed(seed)
    best = Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        xs, ys, run = x[idx], y[idx], Best(x[idx])
        retired = Retirement(len(idx), confirm_rows(confirm, idx), early_exit)
        x_adv = threat.random_start(xs, generator)
        for _ in range(steps):
            a = retired.rows()
            check_deadline(a.numel())  # a tune's --time-budget stops an attack here; verify's progress counts it
            if a.numel() == 0:
                break
            grad, values, logits = gradient(model, x_adv[a], ys[a], loss, eot)
            retired.check(run, run.update_rows(a, x_adv[a], values, logits, ys[a]))
            x_adv[a] = threat.project(x_adv[a] + threat.step(grad, step_size), xs[a])
        a = retired.rows()
        if a.numel():
            with torch.no_grad():
                logits = model(x_adv[a])
            run.update_rows(a, x_adv[a], LOSSES[loss](logits, ys[a]), logits, ys[a])
        best.merge(idx, run)
    return best.x
