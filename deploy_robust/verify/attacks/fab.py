"""FAB (Croce and Hein 2020): minimal-norm adversarials by projecting onto the linearized decision boundary,
untargeted and targeted."""

from __future__ import annotations

import torch

from deploy_robust.verify.threat import ThreatModel
from deploy_robust.verify.attacks.apgd import ranked_targets
from deploy_robust.verify.attacks.gradient import TorchModel
from deploy_robust.progress import check_deadline


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
    goals = ranked_targets(model, x, y, targets) if targets else [None]
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
                check_deadline(len(current))  # a tune's --time-budget stops an attack here; progress counts it
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
