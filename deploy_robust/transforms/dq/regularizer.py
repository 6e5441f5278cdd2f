"""The Defensive Quantization regularizer (Lin, Gan and Han, ICLR 2019) and its Lipschitz proxy.

    R(W) = || W W^T - I ||_F^2,  W = the layer's weight as c_out x (c_in k k)

pushes each layer towards orthonormal rows, so it neither amplifies a perturbation nor the
quantization error that the perturbation causes. For an m x n matrix,
|| W^T W - I_n ||^2 - || W W^T - I_m ||^2 = n - m (both expand to tr((W W^T)^2) - 2 ||W||^2 + dim),
so the two forms have the same gradient; we compute the smaller Gram matrix.
"""

from __future__ import annotations

import torch
from torch import nn

WEIGHTED = (nn.Conv2d, nn.Linear)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv or linear weight as c_out x (everything else)."""
    return weight.reshape(weight.shape[0], -1)


def orthogonality_penalty(weight: torch.Tensor, form: str = "smaller") -> torch.Tensor:
    """|| W W^T - I ||_F^2 ("rows"), || W^T W - I ||_F^2 ("columns"), or whichever Gram is smaller."""
    w = as_matrix(weight)
    m, n = w.shape
    if form == "smaller":
        form = "rows" if m <= n else "columns"
    if form == "rows":
        gram, size = w @ w.T, m
    elif form == "columns":
        gram, size = w.T @ w, n
    else:
        raise ValueError(f"form must be smaller, rows or columns; got {form}")
    return (gram - torch.eye(size, dtype=w.dtype, device=w.device)).pow(2).sum()


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHTED)]


def lipschitz_penalty(model: nn.Module, beta: float) -> torch.Tensor:
    """(beta / 2) * sum over Conv2d / Linear layers of || W W^T - I ||_F^2 (smaller Gram)."""
    terms = [orthogonality_penalty(m.weight) for _, m in weighted_layers(model)]
    return 0.5 * beta * torch.stack(terms).sum()


def spectral_norms(model: nn.Module) -> dict[str, float]:
    """Largest singular value of each layer's c_out x (c_in k k) weight matrix (the DQ paper's proxy);
    for DQ layers, of the quantized weight the engine runs.

    For a convolution this is a proxy, not the operator norm of the convolution itself (each
    input pixel is read by up to k*k/stride^2 output positions)."""
    out = {}
    for name, module in weighted_layers(model):
        weight = module.quantized_weight() if hasattr(module, "quantized_weight") else module.weight
        w = as_matrix(weight.detach().double())
        out[name] = float(torch.linalg.matrix_norm(w, ord=2))
    return out
