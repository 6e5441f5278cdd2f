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
        wrong = logits.argmax(1) != y
        take = (~self.fooled) & (wrong | (loss > self.loss))
        self.x[take] = x[take].detach()
        self.loss = torch.where(take, loss, self.loss)
        self.fooled |= wrong

    def merge(self, idx: torch.Tensor, other: "Best") -> None:
        """Take `other`'s results (a run on the points `idx` only) where they beat ours."""
        take = (~self.fooled[idx]) & (other.fooled | (other.loss > self.loss[idx]))
        rows = idx[take]
        self.x[rows], self.loss[rows] = other.x[take], other.loss[take]
        self.fooled[rows] |= other.fooled[take]

    def unbroken(self) -> torch.Tensor:
        return torch.nonzero(~self.fooled).flatten()
