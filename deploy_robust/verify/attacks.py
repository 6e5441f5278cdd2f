"""Adversarial attacks written from their papers: FGSM, PGD, APGD (CE / DLR / targeted), FAB (untargeted and
targeted), Square (L-inf, L2), EOT.

White-box attacks take `model`: a torch callable from [0, 1] images to logits (the twin S,
whose quantizers and other non-differentiable ops pass straight-through gradients), and
return, per example, the best candidate found: a misclassifying point when one was found,
else the point of highest loss. Square takes `scores`: a numpy callable (the engine E).
`eot` averages gradients over that many forward passes (for stochastic models).
Restarts and target classes after the first run only on the points not yet broken (as AutoAttack does).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from deploy_robust.verify.threat import ThreatModel

TorchModel = Callable[[torch.Tensor], torch.Tensor]


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y: positive exactly when misclassified (C&W margin)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - true


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce and Hein 2020): scale-invariant margin."""
    ordered = logits.sort(1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return (other.max(1).values - true) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce and Hein 2020): (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    ordered = logits.sort(1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    goal = logits.gather(1, target[:, None]).squeeze(1)
    return (goal - true) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


LOSSES = {"ce": lambda z, y: F.cross_entropy(z, y, reduction="none"), "margin": margin_loss, "dlr": dlr_loss}


def _gradient(model: TorchModel, x: torch.Tensor, y: torch.Tensor, loss, eot: int):
    """Input gradient and per-example loss, averaged over `eot` forward passes (EOT)."""
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    grad_sum = loss_sum = logits = None
    for _ in range(eot):
        x_var = x.detach().requires_grad_(True)
        logits = model(x_var)
        per_example = loss_fn(logits, y)
        if per_example.requires_grad:
            grad, = torch.autograd.grad(per_example.sum(), x_var)
        else:  # an output with no path back to the input (e.g. a vote): the gradient is zero
            grad = torch.zeros_like(x_var)
        grad_sum = grad if grad_sum is None else grad_sum + grad
        loss_sum = per_example.detach() if loss_sum is None else loss_sum + per_example.detach()
    if eot > 1:
        grad_sum, loss_sum = grad_sum / eot, loss_sum / eot
    return grad_sum, loss_sum, logits.detach()


class _Best:
    """Per example: a misclassifying point if found (kept once found), else the highest-loss point."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.clone()
        self.loss = torch.full((len(x),), -float("inf"))
        self.fooled = torch.zeros(len(x), dtype=torch.bool)

    def update(self, x: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        wrong = logits.argmax(1) != y
        take = (~self.fooled) & (wrong | (loss > self.loss))
        self.x[take] = x[take].detach()
        self.loss = torch.where(take, loss, self.loss)
        self.fooled |= wrong

    def merge(self, idx: torch.Tensor, other: "_Best") -> None:
        """Take `other`'s results (a run on the points `idx` only) where they beat ours."""
        take = (~self.fooled[idx]) & (other.fooled | (other.loss > self.loss[idx]))
        rows = idx[take]
        self.x[rows], self.loss[rows] = other.x[take], other.loss[take]
        self.fooled[rows] |= other.fooled[take]

    def unbroken(self) -> torch.Tensor:
        return torch.nonzero(~self.fooled).flatten()


def fgsm(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, eot: int = 1) -> torch.Tensor:
    grad, _, _ = _gradient(model, x, y, "ce", eot)
    return threat.project(x + threat.step(grad, threat.eps), x)


def pgd(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 50,
        step_size: float | None = None, restarts: int = 1, loss: str = "ce", eot: int = 1,
        seed: int = 0) -> torch.Tensor:
    """Madry et al. 2018: projected steepest ascent from a random start; best over restarts."""
    step_size = step_size if step_size is not None else 2.5 * threat.eps / steps
    generator = torch.Generator().manual_seed(seed)
    best = _Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        xs, ys, run = x[idx], y[idx], _Best(x[idx])
        x_adv = threat.random_start(xs, generator)
        for _ in range(steps):
            grad, values, logits = _gradient(model, x_adv, ys, loss, eot)
            run.update(x_adv, values, logits, ys)
            x_adv = threat.project(x_adv + threat.step(grad, step_size), xs)
        with torch.no_grad():
            logits = model(x_adv)
        run.update(x_adv, LOSSES[loss](logits, ys), logits, ys)
        best.merge(idx, run)
    return best.x


def _apgd_checkpoints(steps: int) -> list[int]:
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 6)) for q in p if q <= 1})[1:]


def apgd(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 100,
         loss="ce", restarts: int = 1, eot: int = 1, seed: int = 0, rho: float = 0.75,
         momentum: float = 0.75, best: "_Best | None" = None) -> torch.Tensor:
    """Auto-PGD (Croce and Hein, ICML 2020): step size 2*eps halved at checkpoints when progress
    stalls (fewer than rho of the steps improved, or no change since the last checkpoint),
    restarting from the best point; momentum 0.75 after the first step. Each restart runs on the
    points no earlier run (nor an earlier call sharing `best`) has broken."""
    generator = torch.Generator().manual_seed(seed)
    best = best or _Best(x)
    for _ in range(restarts):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = _Best(x[idx])
        _apgd_run(model, x[idx], y[idx], threat, steps, loss, eot, generator, rho, momentum, run)
        best.merge(idx, run)
    return best.x


def _apgd_run(model, x, y, threat: ThreatModel, steps: int, loss, eot: int, generator: torch.Generator, rho: float,
              momentum: float, best: _Best) -> None:
    checkpoints = _apgd_checkpoints(steps)
    n = len(x)
    shape = (-1, *[1] * (x.dim() - 1))
    x_adv = threat.random_start(x, generator)
    eta = torch.full((n,), 2.0 * threat.eps)
    grad, loss_now, logits = _gradient(model, x_adv, y, loss, eot)
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
        grad, loss_new, logits = _gradient(model, x_adv, y, loss, eot)
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


def _ranked_targets(model: TorchModel, x: torch.Tensor, y: torch.Tensor, count: int) -> list[torch.Tensor]:
    """The `count` classes the clean logits rank highest after the true one, one tensor of targets each."""
    with torch.no_grad():
        ranked = model(x).sort(1, descending=True).indices
    targets = []
    for k in range(1, min(count, ranked.shape[1] - 1) + 1):
        target = ranked[:, k].clone()
        target[target == y] = ranked[target == y, 0]  # the true class never is its own target
        targets.append(target)
    return targets


def apgd_targeted(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 100,
                  targets: int = 9, restarts: int = 1, eot: int = 1, seed: int = 0) -> torch.Tensor:
    """APGD-T: APGD on the targeted DLR loss toward each of the `targets` classes the clean
    logits rank highest after the true one (AutoAttack's version uses 9), each on the points the
    earlier targets left unbroken."""
    best = _Best(x)
    for k, target in enumerate(_ranked_targets(model, x, y, targets), start=1):
        idx = best.unbroken()
        if idx.numel() == 0:
            break
        run = _Best(x[idx])
        loss = lambda z, labels, t=target[idx]: dlr_targeted_loss(z, labels, t)
        apgd(model, x[idx], y[idx], threat, steps=steps, loss=loss, restarts=restarts, eot=eot, seed=seed + k, best=run)
        best.merge(idx, run)
    return best.x


def _boundary_step(p: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str) -> torch.Tensor:
    """FAB's projection: per row, the delta of least L-p norm with w . delta = c and p + delta in [0, 1].

    Oriented to c's sign, the minimizer is delta_i = clip(t * b_i, box) along sign(w_i), with b_i = 1 for L-inf
    and |w_i| for L2: w . delta(t) = sum_i |w_i| min(t b_i, cap_i) (cap_i: the room to the box's side), which
    is piecewise linear in t with breakpoints cap_i / b_i. Sorting them finds the exact t in one pass. Where
    the box holds no such delta, the box point furthest along w."""
    sign = torch.sign(c)[:, None]
    w, goal = w * sign, c.abs()
    direction = w.sign()
    cap = torch.where(direction > 0, 1 - p, p)                           # room to the box's side, >= 0
    a = w.abs()
    b = torch.ones_like(a) if norm == "linf" else a
    breaks = torch.where(b > 0, cap / b.clamp_min(1e-30), torch.full_like(cap, 1e30))
    breaks, order = breaks.sort(1)
    a_cap, a_b = (a * cap).gather(1, order), (a * b).gather(1, order)
    clipped = torch.cumsum(a_cap, 1) - a_cap                                # sum over the breakpoints before k
    free = a_b.flip(1).cumsum(1).flip(1)                                    # sum over k and after
    reach = clipped + breaks * free                                         # w . delta at each breakpoint
    k = torch.searchsorted(reach, goal[:, None].contiguous()).clamp(max=reach.shape[1] - 1)
    t = (goal[:, None] - clipped.gather(1, k)) / free.gather(1, k).clamp_min(1e-30)
    t = torch.where(reach[:, -1:] < goal[:, None], breaks[:, -1:].clamp(max=1e30), t)  # infeasible: the corner
    delta = torch.minimum(t * b, cap) * direction
    return delta * (goal > 0)[:, None]


def _norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().max(1).values if norm == "linf" else flat.norm(dim=1)


def _boundary_linearization(model: TorchModel, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                            norm: str, eot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f = z_l - z_y and its input gradient for the class l FAB steps toward: `target`, or (untargeted) the class
    whose linearized boundary is closest (|f_l| / ||grad f_l||_q, q the dual norm). Also returns the logits."""
    x_var = x.detach().requires_grad_(True)
    f_sum = grad_sum = None
    for _ in range(eot):
        logits = model(x_var)
        true = logits.gather(1, y[:, None])
        if target is not None:
            f = (logits.gather(1, target[:, None]) - true).squeeze(1)
            grad, = torch.autograd.grad(f.sum(), x_var)
        else:
            diffs = logits - true
            grads = torch.stack([torch.autograd.grad(diffs[:, k].sum(), x_var, retain_graph=True)[0]
                                 for k in range(logits.shape[1])], 1)
            dual = grads.flatten(2).abs().sum(2) if norm == "linf" else grads.flatten(2).norm(dim=2)
            distance = diffs.detach().abs() / dual.clamp_min(1e-12)
            distance.scatter_(1, y[:, None], float("inf"))
            closest = distance.argmin(1)
            f = diffs.gather(1, closest[:, None]).squeeze(1)
            grad = grads[torch.arange(len(x)), closest]
        f_sum = f.detach() if f_sum is None else f_sum + f.detach()
        grad_sum = grad if grad_sum is None else grad_sum + grad
    return f_sum / eot, (grad_sum / eot).flatten(1), logits.detach()


def fab(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 100,
        restarts: int = 1, targets: int | None = None, eot: int = 1, seed: int = 0, alpha_max: float = 0.1,
        overshoot: float = 1.05, backtrack: float = 0.9) -> torch.Tensor:
    """FAB (Croce and Hein, ICML 2020), a minimum-norm attack: at each step linearize the decision boundary
    toward class l (a `targets` class for FAB-T, else the closest one), project both the current point and
    the original onto that hyperplane within the [0, 1] box, and step to a convex combination of the two
    projections (weight on the original's at most `alpha_max`; both stretched by `overshoot`). Once a point
    is adversarial it is kept if smaller than the best so far and pulled back toward the original by
    `backtrack`. Later restarts begin from a random point within half of min(eps, best norm).

    Returns per point the smallest adversarial found, projected into the eps-ball (a candidate for the
    engine to score), or the original where none was found."""
    generator = torch.Generator().manual_seed(seed)
    shape = x.shape
    flat_x = x.flatten(1)
    best = x.clone()
    with torch.no_grad():  # already misclassified: norm 0
        best_norm = torch.where(model(x).argmax(1) != y, 0.0, float("inf"))
    goals = _ranked_targets(model, x, y, targets) if targets else [None]
    for target in goals:
        for restart in range(restarts):
            idx = torch.nonzero(best_norm > threat.eps).flatten()  # the rest are already broken within the threat
            if idx.numel() == 0:
                break
            origin, ys, goal = flat_x[idx], y[idx], None if target is None else target[idx]
            current = origin.clone()
            if restart:
                radius = torch.clamp(best_norm[idx], max=threat.eps)[:, None] / 2
                start = threat.random_start(x[idx], generator).flatten(1) - origin
                start = start / _norms(start, threat.norm).clamp_min(1e-12)[:, None] * radius
                current = (origin + start).clamp(0, 1)
            found, found_norm = best[idx].flatten(1).clone(), best_norm[idx].clone()
            for _ in range(steps):
                f, w, _ = _boundary_linearization(model, current.view(-1, *shape[1:]), ys, goal, threat.norm, eot)
                to_here = _boundary_step(current, w, -f, threat.norm)
                to_origin = _boundary_step(origin, w, -f - (w * (origin - current)).sum(1), threat.norm)
                a, b = _norms(to_here, threat.norm), _norms(to_origin, threat.norm)
                alpha = torch.clamp(a / (a + b).clamp_min(1e-12), 0, alpha_max)[:, None]
                current = ((1 - alpha) * (current + overshoot * to_here)
                           + alpha * (origin + overshoot * to_origin)).clamp(0, 1)
                with torch.no_grad():
                    fooled = model(current.view(-1, *shape[1:])).argmax(1) != ys
                size = _norms(current - origin, threat.norm)
                smaller = fooled & (size < found_norm)
                found[smaller], found_norm[smaller] = current[smaller], size[smaller]
                current = torch.where(fooled[:, None], origin + backtrack * (current - origin), current)
            best[idx], best_norm[idx] = found.view(-1, *shape[1:]), found_norm
    return torch.where(torch.isfinite(best_norm).view(-1, *[1] * (x.dim() - 1)), threat.project(best, x), x)


def _random_search(scores: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, x_init: np.ndarray,
                   queries: int, propose: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
    """Square's outer loop: per step, `propose(step, current, clean)` a candidate for every point
    not yet misclassified; keep it where the margin decreases. Returns the points and queries spent."""
    x_best = np.clip(x_init, 0, 1).astype(np.float32)
    margin = _margins(scores(x_best), y)
    used = 1
    for i in range(queries - 1):
        active = np.flatnonzero(margin > 0)
        if active.size == 0:
            break
        candidate = np.clip(propose(i, x_best[active], x[active]), 0, 1).astype(np.float32)
        new_margin = _margins(scores(candidate), y[active])
        used += 1
        better = new_margin < margin[active]
        x_best[active[better]] = candidate[better]
        margin[active[better]] = new_margin[better]
    return x_best, used


def square_linf(scores: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, eps: float, *,
                queries: int = 1000, p_init: float = 0.8, seed: int = 0) -> tuple[np.ndarray, int]:
    """Square attack (Andriushchenko et al., ECCV 2020), L-inf, score-based: random square
    updates at the eps-ball's vertices, kept when the margin loss decreases (p_init 0.8 and
    the published halving schedule, as AutoAttack runs it). Only scores are
    used, so it runs on the engine itself. Returns the points and the queries spent."""
    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape

    def propose(i: int, current: np.ndarray, clean: np.ndarray) -> np.ndarray:
        side = max(1, min(h - 1, int(round(math.sqrt(_square_p(p_init, i, queries) * h * w)))))
        r, col = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        candidate = current.copy()
        window = eps * rng.choice([-1.0, 1.0], size=(len(current), c, 1, 1))
        candidate[:, :, r:r + side, col:col + side] = clean[:, :, r:r + side, col:col + side] + window
        return candidate

    return _random_search(scores, x, y, x + eps * rng.choice([-1.0, 1.0], size=(n, c, 1, w)), queries, propose)


def square_l2(scores: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, eps: float, *,
              queries: int = 1000, p_init: float = 0.3, seed: int = 0) -> tuple[np.ndarray, int]:
    """Square attack, L2 version (Andriushchenko et al., ECCV 2020): the perturbation is a grid of
    centred "pseudo-Gaussian" bumps of norm eps in total; each step picks two random windows,
    moves the L2 mass of both (plus any unused budget) into the first with a fresh two-lobed
    bump, empties the second, and keeps the change when the margin decreases."""
    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape
    tile = max(1, h // 5)
    delta = np.zeros_like(x, dtype=np.float32)
    for r in range(0, h, tile):
        for col in range(0, w, tile):
            th, tw = min(tile, h - r), min(tile, w - col)
            delta[:, :, r:r + th, col:col + tw] = _pseudo_gaussian(th, tw) * rng.choice([-1.0, 1.0], size=(n, c, 1, 1))
    delta *= eps / np.sqrt((delta ** 2).sum(axis=(1, 2, 3), keepdims=True))

    def propose(i: int, current: np.ndarray, clean: np.ndarray) -> np.ndarray:
        side = max(3, min(h - 1, int(round(math.sqrt(_square_p(p_init, i, queries) * h * w)))))
        side = min(side, h - 1, w - 1) if min(h, w) > 3 else 1
        (r1, c1), (r2, c2) = (rng.integers(0, [h - side + 1, w - side + 1]) for _ in range(2))
        w1 = (slice(None), slice(None), slice(r1, r1 + side), slice(c1, c1 + side))
        w2 = (slice(None), slice(None), slice(r2, r2 + side), slice(c2, c2 + side))
        d = current - clean
        union = np.zeros_like(d, dtype=bool)
        union[w1] = True
        union[w2] = True
        mass = (np.where(union, d, 0) ** 2).sum(axis=(2, 3))                        # per image and channel
        slack = np.maximum(eps ** 2 - (d ** 2).sum(axis=(1, 2, 3)), 0)[:, None] / c
        budget = np.sqrt(mass + slack)[:, :, None, None]
        grown = d[w1] + _two_lobed(side, rng) * rng.choice([-1.0, 1.0], size=(len(d), c, 1, 1)) * budget
        grown *= budget / np.maximum(np.sqrt((grown ** 2).sum(axis=(2, 3), keepdims=True)), 1e-12)
        d[w2] = 0
        d[w1] = grown
        return clean + d

    return _random_search(scores, x, y, x + delta, queries, propose)


def _pseudo_gaussian(h: int, w: int) -> np.ndarray:
    """Nested centred rectangles weighted 1/(k+1)^2, unit L2 norm: a cheap Gaussian-like bump."""
    bump = np.zeros((h, w), dtype=np.float32)
    cy, cx = h // 2, w // 2
    for k in range(max(h, w)):
        bump[max(cy - k, 0):min(cy + k + 1, h), max(cx - k, 0):min(cx + k + 1, w)] += 1.0 / (k + 1) ** 2
    return bump / np.sqrt((bump ** 2).sum())


def _two_lobed(side: int, rng: np.random.Generator) -> np.ndarray:
    """A window of two opposite-signed bumps (random orientation), unit L2 norm."""
    half = side // 2
    bump = np.zeros((side, side), dtype=np.float32)
    bump[:half] = _pseudo_gaussian(half, side) if half else 0
    bump[half:] = -_pseudo_gaussian(side - half, side)
    if rng.random() < 0.5:
        bump = bump.T
    return bump / np.sqrt((bump ** 2).sum())


def averaged_scores(scores: Callable[[np.ndarray], np.ndarray], draws: int) -> Callable[[np.ndarray], np.ndarray]:
    """Scores of a stochastic model for score-based attacks: the log of the member-averaged
    probabilities over `draws` runs (EOT for black-box attacks)."""
    def averaged(x: np.ndarray) -> np.ndarray:
        total = 0.0
        for _ in range(draws):
            z = scores(x).astype(np.float64)
            z = np.exp(z - z.max(1, keepdims=True))
            total = total + z / z.sum(1, keepdims=True)
        return np.log(total / draws + 1e-12)
    return averaged


def _square_p(p_init: float, i: int, total: int) -> float:
    """The published schedule: p halves at fixed fractions of a 10,000-query budget."""
    i = int(i / total * 10000)
    for limit, factor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                          (6000, 128), (8000, 256)):
        if i <= limit:
            return p_init / factor
    return p_init / 512


def _margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z_y - max_{j != y} z_j (negative once misclassified)."""
    true = logits[np.arange(len(y)), y]
    other = logits.copy()
    other[np.arange(len(y)), y] = -np.inf
    return true - other.max(1)


def _fgsm(model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, eot: int = 1,
          seed: int = 0) -> torch.Tensor:
    return fgsm(model, x, y, threat, eot=eot)  # deterministic: no seed


def _square(scores: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, threat: ThreatModel, *,
            seed: int = 0, restarts: int = 1, **params) -> np.ndarray:
    """Square for the threat's norm; each restart on the points the earlier ones left unbroken."""
    square = square_linf if threat.norm == "linf" else square_l2
    best, left = x.copy(), np.arange(len(x))
    for restart in range(restarts):
        found = square(scores, x[left], y[left], threat.eps, seed=seed + restart, **params)[0]
        best[left] = found
        left = left[scores(found).argmax(1) == y[left]]
        if left.size == 0:
            break
    return best


# The registered attacks, by the method name a suite's `Attack` gives. A white-box method is called as
# method(model, x, y, threat, seed=, eot=, **params) on torch tensors; a black-box one as
# method(scores, x, y, threat, seed=, **params) on numpy arrays. Adding an attack: write it above,
# register it here, place it in a suite (verify/suites.py).
WHITE_BOX: dict[str, Callable[..., torch.Tensor]] = {"fgsm": _fgsm, "pgd": pgd, "apgd": apgd, "apgd-t": apgd_targeted,
                                                     "fab": fab}
BLACK_BOX: dict[str, Callable[..., np.ndarray]] = {"square": _square}
