"""APGD (Croce and Hein 2020): step-size halving at the paper's checkpoints, momentum, CE / DLR losses, and the
targeted version over the top-ranked classes."""

from __future__ import annotations

import math
import torch

from deploy_robust.verify.threat import ThreatModel
from deploy_robust.verify.attacks.gradient import Best, Confirm, Retirement, TorchModel, confirm_rows, gradient
from deploy_robust.verify.attacks.losses import dlr_targeted_loss, margin_loss
from deploy_robust.progress import check_deadline


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
    target: torch.Tensor | None = None,
    confirm: Confirm | None = None,
    early_exit: bool = True,
) -> torch.Tensor:
    """Auto-PGD (Croce and Hein, ICML 2020): step size 2*eps halved at checkpoints when progress
    stalls (fewer than rho of the steps improved, or no change since the last checkpoint),
    restarting from the best point; momentum 0.75 after the first step. Each restart runs on the
    points no earlier run (nor an earlier call sharing `best`) has broken, and inside a run a point
    stops costing steps once broken (`Retirement`; `confirm` checks it on the engine). `target`: per point,
    the class of a targeted loss (`loss` is then called as loss(logits, y, target))."""
    generator = torch.Generator().manual_seed(seed)
    best = best or Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = Best(x[idx])
        goal = None if target is None else target[idx]
        settings = (steps, loss, eot, generator, rho, momentum, early_exit)
        _apgd_run(model, x[idx], y[idx], threat, settings, run, goal, confirm_rows(confirm, idx))
        best.merge(idx, run)
    return best.x


def _loss_on(loss, target: torch.Tensor | None, rows: torch.Tensor):
    if target is None:
        return loss
    return lambda z, labels: loss(z, labels, target[rows])


def _apgd_run(model, x, y, threat: ThreatModel, settings, best: Best, target, confirm: Confirm | None) -> None:
    steps, loss, eot, generator, rho, momentum, early_exit = settings
    checkpoints = _apgd_checkpoints(steps)
    n = len(x)
    shape = (-1, *[1] * (x.dim() - 1))
    retired = Retirement(n, confirm, early_exit)
    every = torch.arange(n)
    x_adv = threat.random_start(x, generator)
    eta = torch.full((n,), 2.0 * threat.eps)
    grad, loss_now, logits = gradient(model, x_adv, y, _loss_on(loss, target, every), eot)
    retired.check(best, best.update_rows(every, x_adv, loss_now, logits, y))
    x_max, loss_max, grad_max = x_adv.clone(), loss_now.clone(), grad.clone()
    x_prev = x_adv.clone()
    increases = torch.zeros(n)
    last_check, eta_at_check, loss_max_at_check = 0, eta.clone(), loss_max.clone()
    for k in range(steps):
        a = retired.rows()
        check_deadline(a.numel())  # a tune's --time-budget stops an attack here; verify's progress counts the step
        if a.numel() == 0:
            break
        xa, xs = x_adv[a], x[a]
        z = threat.project(xa + threat.step(grad[a], 1.0) * eta[a].view(shape), xs)
        x_next = z if k == 0 else threat.project(xa + momentum * (z - xa) + (1 - momentum) * (xa - x_prev[a]), xs)
        x_prev[a], x_adv[a] = xa, x_next
        grad_a, loss_new, logits = gradient(model, x_next, y[a], _loss_on(loss, target, a), eot)
        grad[a] = grad_a
        retired.check(best, best.update_rows(a, x_next, loss_new, logits, y[a]))
        increases[a] += (loss_new > loss_now[a]).float()
        loss_now[a] = loss_new
        improved = loss_new > loss_max[a]
        rows = a[improved]
        x_max[rows], grad_max[rows], loss_max[rows] = x_next[improved], grad_a[improved], loss_new[improved]
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


def malt_targets(model: TorchModel, x: torch.Tensor, y: torch.Tensor, count: int, norm: str) -> list[torch.Tensor]:
    """The `count` classes nearest to the decision boundary by a linear estimate from the model's Jacobian (MALT,
    Melamed, Yehudai and Shamir, NeurIPS 2024): per class c, the margin z_y - z_c over the dual norm of its input
    gradient (L1 for L-inf, L2 for L2), smallest first. One gradient pass per class."""
    with torch.no_grad():
        classes = model(x).shape[1]
    scores = torch.full((len(x), classes), float("inf"))
    for c in range(classes):
        toward = torch.full_like(y, c)
        grad, gap, _ = gradient(model, x, y, lambda z, labels, t=toward: z.gather(1, t[:, None]).squeeze(1)
                                - z.gather(1, labels[:, None]).squeeze(1), 1)  # fmt: skip
        dual = grad.flatten(1).abs().sum(1) if norm == "linf" else grad.flatten(1).norm(dim=1)
        scores[:, c] = -gap / (dual + 1e-12)
    scores[torch.arange(len(x)), y] = float("inf")  # the true class never is its own target
    order = scores.argsort(1)
    return [order[:, k].clone() for k in range(min(count, classes - 1))]


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
    ranking: str = "logits",
    confirm: Confirm | None = None,
    early_exit: bool = True,
    rescue_restarts: int = 0,
    rescue_below: float = 0.1,
) -> torch.Tensor:
    """APGD-T: APGD on the targeted DLR loss toward each of `targets` classes, each on the points the earlier
    targets left unbroken. `ranking` "logits": the classes the clean logits rank highest after the true one
    (AutoAttack's, with 9 targets); "malt": the classes MALT's Jacobian estimate puts nearest.

    `rescue_restarts`: restarts only where the loss says they can still help. A point the targets left unbroken
    whose best margin fell below `rescue_below` of its clean margin (it nearly crossed) gets that many more
    random starts toward the class nearest at its best point; the rest, far from any boundary, get none."""
    if ranking == "malt":
        goals = malt_targets(model, x, y, targets, threat.norm)
    else:
        goals = ranked_targets(model, x, y, targets)
    best = Best(x)
    for k, target in enumerate(goals, start=1):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = Best(x[idx])
        apgd(model, x[idx], y[idx], threat, steps=steps, loss=dlr_targeted_loss, restarts=restarts, eot=eot,
             seed=seed + k, best=run, target=target[idx], confirm=confirm_rows(confirm, idx), early_exit=early_exit)  # fmt: skip
        best.merge(idx, run)
    if rescue_restarts:
        idx, nearest = _nearly_crossed(model, x, y, best, rescue_below)
        if idx.numel():
            run = Best(x[idx])
            apgd(model, x[idx], y[idx], threat, steps=steps, loss=dlr_targeted_loss, restarts=rescue_restarts,
                 eot=eot, seed=seed + 100, best=run, target=nearest, confirm=confirm_rows(confirm, idx),
                 early_exit=early_exit)  # fmt: skip
            best.merge(idx, run)
    return best.x


def _nearly_crossed(model: TorchModel, x: torch.Tensor, y: torch.Tensor, best: Best, below: float):
    """The unbroken points whose best candidate's margin is under `below` of their clean margin, and for each the
    class nearest at that candidate (the target of a rescue restart)."""
    idx = best.unbroken()
    if idx.numel() == 0:
        return idx, idx
    with torch.no_grad():
        clean, found = model(x[idx]), model(best.x[idx])
    ratio = margin_loss(found, y[idx]) / margin_loss(clean, y[idx]).clamp_max(-1e-12)  # both negative: still right
    near = ratio < below
    nearest = found.scatter(1, y[idx, None], float("-inf")).argmax(1)  # the highest class but the true one
    return idx[near], nearest[near]
