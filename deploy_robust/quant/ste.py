"""The straight-through estimator: a quantized value forward, the identity's gradient backward."""

from __future__ import annotations

import torch


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """`quantized`'s values (as x + (quantized - x): exact up to one float rounding) with `x`'s gradient
    (Bengio et al. 2013; BPDA's identity approximation)."""
    return x + (quantized - x).detach()


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return straight_through(x, torch.round(x))
