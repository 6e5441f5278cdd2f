"""APGD (Croce and Hein 2020): step-size halving at the paper's checkpoints, momentum, CE / DLR losses, and the
targeted version over the top-ranked classes."""

from __future__ import annotations

import math
from functools import partial

import torch

from deploy_robust.verify.threat import ThreatModel
from deploy_robust.verify.attacks.gradient import Best, TorchModel, gradient
from deploy_robust.verify.attacks.losses import dlr_targeted_loss


def _apgd_checkpoints(steps: int) -> list[int]:
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 6)) for q in p if q <= 1})[1:]


def apgd(
    model: TorchModel,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    loss="ce",
    restarts: int = 1,
    eot: int = 1,
    seed: int = 0,
    rho: float = 0.75,
    momentum: float = 0.75,
    best: "Best | None" = None,
) -> torch.Tensor:
    """Auto-PGD (Croce and Hein, ICML 2020): step size 2*eps halved at checkpoints when progress
    stalls (fewer than rho of the steps improved, or no change since the last checkpoint),
    restarting from the best point; momentum 0.75 after the first step. Each restart runs on the
    points no earlier run (nor an earlier call sharing `best`) has broken."""
    generator = torch.Generator().manual_seed(seed)
    best = best or Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = Best(x[idx])
        _apgd_run(model, x[idx], y[idx], threat, steps, loss, eot, generator, rho, momentum, run)
        best.merge(idx, run)
    return best.x


def _apgd_run(
    model,
    x,
    y,
    threat: ThreatModel,
    steps: int,
    loss,
    eot: int,
    generator: torch.Generator,
    rho: float,
    momentum: float,
    best: Best,
) -> None:
    checkpoints = _apgd_checkpoints(steps)
    n = len(x)
    shape = (-1, *[1] * (x.dim() - 1))
    x_adv = threat.random_start(x, generator)
    eta = torch.full((n,), 2.0 * threat.eps)
    grad, loss_now, logits = gradient(model, x_adv, y, loss, eot)
    best.update(x_adv, loss_now, logits, y)
    x_max, loss_max, grad_max = x_adv.clone(), loss_now.clone(), grad.clone()
    x_prev = x_adv.clone()
    increases = torch.zeros(n)
    last_check, eta_at_check, loss_max_at_check = 0, eta.clone(), loss_max.clone()
    for k in range(steps):
        z = threat.project(x_adv + threat.step(grad, 1.0) * eta.view(shape), x)
        if k == 0:
            x_next = z
        else:
            x_next = threat.project(x_adv + momentum * (z - x_adv) + (1 - momentum) * (x_adv - x_prev), x)
        x_prev, x_adv = x_adv, x_next
        grad, loss_new, logits = gradient(model, x_adv, y, loss, eot)
        best.update(x_adv, loss_new, logits, y)
        increases += (loss_new > loss_now).float()
        loss_now = loss_new
        improved = loss_new > loss_max
        x_max[improved], grad_max[improved] = x_adv[improved], grad[improved]
        loss_max = torch.where(improved, loss_new, loss_max)
        if k + 1 in checkpoints:
            span = k + 1 - last_check
            stalled = (increases < rho * span) | ((eta == eta_at_check) & (loss_max == loss_max_at_check))
            eta = torch.where(stalled, eta / 2, eta)
            x_adv[stalled], grad[stalled] = x_max[stalled], grad_max[stalled]
            increases.zero_()
            last_check, eta_at_check, loss_max_at_check = k + 1, eta.clone(), loss_max.clone()


def ranked_targets(model: TorchModel, x: torch.Tensor, y: torch.Tensor, count: int) -> list[torch.Tensor]:
    """The `count` classes the clean logits rank highest after the true one, one tensor of targets each."""
    with torch.no_grad():
        ranked = model(x).sort(1, descending=True).indices
    targets = []
    for k in range(1, min(count, ranked.shape[1] - 1) + 1):
        target = ranked[:, k].clone()
        target[target == y] = ranked[target == y, 0]  # the true class never is its own target
        targets.append(target)
    return targets


def _targeted(z: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return dlr_targeted_loss(z, labels, target)


def apgd_targeted(
    model: TorchModel,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int = 100,
    targets: int = 9,
    restarts: int = 1,
    eot: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """APGD-T: APGD on the targeted DLR loss toward each of the `targets` classes the clean
    logits rank highest after the true one (AutoAttack's version uses 9), each on the points the
    earlier targets left unbroken."""
    best = Best(x)
    for k, target in enumerate(ranked_targets(model, x, y, targets), start=1):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = Best(x[idx])
        loss = partial(_targeted, target=target[idx])
        apgd(model, x[idx], y[idx], threat, steps=steps, loss=loss, restarts=restarts, eot=eot, seed=seed + k, best=run)
        best.merge(idx, run)
    return best.x
