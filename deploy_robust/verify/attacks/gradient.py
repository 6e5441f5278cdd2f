"""What every white-box attack shares: the input gradient averaged over EOT draws, and the best candidate so far."""

from __future__ import annotations

from typing import Callable

import torch

from deploy_robust.verify.attacks.losses import LOSSES

TorchModel = Callable[[torch.Tensor], torch.Tensor]


def gradient(model: TorchModel, x: torch.Tensor, y: torch.Tensor, loss, eot: int):
    """Input gradient and per-example loss, averaged over `eot` forward passes (EOT)."""
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    grad_sum = loss_sum = logits = None
    for _ in range(eot):
        x_var = x.detach().requires_grad_(True)
        logits = model(x_var)
        per_example = loss_fn(logits, y)
        if per_example.requires_grad:
            (grad,) = torch.autograd.grad(per_example.sum(), x_var)
        else:  # an output with no path back to the input (e.g. a vote): the gradient is zero
            grad = torch.zeros_like(x_var)
        grad_sum = grad if grad_sum is None else grad_sum + grad
        loss_sum = per_example.detach() if loss_sum is None else loss_sum + per_example.detach()
    if eot > 1:
        grad_sum, loss_sum = grad_sum / eot, loss_sum / eot
    return grad_sum, loss_sum, logits.detach()


class Best:
    """Per example: a misclassifying point if found (kept once found), else the highest-loss point."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.clone()
        self.loss = torch.full((len(x),), -float("inf"))
        self.fooled = torch.zeros(len(x), dtype=torch.bool)

    def update(self, x: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.update_rows(torch.arange(len(self.x)), x, loss, logits, y)

    def update_rows(
        self, rows: torch.Tensor, x: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """`update` for the points `rows` only (x, loss, logits and y are theirs); returns the rows newly fooled."""
        wrong = logits.argmax(1) != y
        fooled = self.fooled[rows]
        take = (~fooled) & (wrong | (loss > self.loss[rows]))
        self.x[rows[take]] = x[take].detach()
        self.loss[rows[take]] = loss[take]
        self.fooled[rows] = fooled | wrong
        return rows[wrong & ~fooled]

    def merge(self, idx: torch.Tensor, other: "Best") -> None:
        """Take `other`'s results (a run on the points `idx` only) where they beat ours."""
        take = (~self.fooled[idx]) & (other.fooled | (other.loss > self.loss[idx]))
        rows = idx[take]
        self.x[rows], self.loss[rows] = other.x[take], other.loss[take]
        self.fooled[rows] |= other.fooled[take]

    def unbroken(self) -> torch.Tensor:
        return torch.nonzero(~self.fooled).flatten()


# Confirms candidates on the engine: (rows of the attacked batch, their candidates) -> True where the engine
# misclassifies them. An attack stops spending steps on a row once its candidate is confirmed.
Confirm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Retirement:
    """Early exit inside an attack: a point whose best candidate fools the attacked model stops costing steps.

    Without `confirm` the point retires when the attacked model is fooled: its candidate is frozen from then on
    (`Best` keeps the first fooling point), so further steps on it could not change the result. With `confirm`
    (a deterministic engine), the candidate is checked on the engine at once: confirmed points retire; points the
    engine still gets right are un-frozen and attacked on, which can only find more."""

    def __init__(self, n: int, confirm: Confirm | None, early_exit: bool = True) -> None:
        self.active = torch.ones(n, dtype=torch.bool)
        self.confirm = confirm
        self.early_exit = early_exit  # False: every point runs every step (the attack as published)

    def rows(self) -> torch.Tensor:
        return torch.nonzero(self.active).flatten()

    def check(self, best: Best, newly_fooled: torch.Tensor) -> None:
        if newly_fooled.numel() == 0 or not self.early_exit:
            return
        if self.confirm is None:
            self.active[newly_fooled] = False
            return
        broken = self.confirm(newly_fooled, best.x[newly_fooled])
        self.active[newly_fooled[broken]] = False
        best.fooled[newly_fooled[~broken]] = False  # the engine disagrees with the model attacked: keep searching


def confirm_rows(confirm: Confirm | None, idx: torch.Tensor) -> Confirm | None:
    """`confirm` for a run on the points `idx` of the batch `confirm` was made for."""
    return None if confirm is None else (lambda rows, x: confirm(idx[rows], x))
