"""One convolution's GDWS approximation: per-input-channel SVD, and the two optimal allocations.

A KxK convolution W (M x C x K x K) is, per input channel c, a matrix W_c (M x K^2). GDWS
replaces W_c by P_c D_c with g_c rank-one terms: D_c holds g_c depthwise filters, P_c the
matching pointwise columns. For a fixed allocation g the best factors are the truncated SVD
of each W_c, and the weighted error sum_c alpha_c ||W_c - P_c D_c||_F^2 is the sum of the
dropped scores alpha_c sigma_{c,i}^2 (Eckart-Young). Both allocations rank every score in one
total order (largest score first, ties by channel then rank index), so:

- MEGO (budget G): keep the first G scores;
- LEGO (error beta): drop scores from the end while their sum stays <= beta;

and the same G gives the same allocation either way. Because singular values are sorted
within a channel, the kept set of each channel is always its leading g_c components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ChannelSVD:
    """W_c = U_c diag(s_c) V_c^T for every input channel c, in float64.

    u: (C, M, R), s: (C, R), v: (C, R, Kh*Kw) with R = min(M, Kh*Kw); `kernel` = (Kh, Kw).
    """

    u: np.ndarray
    s: np.ndarray
    v: np.ndarray
    kernel: tuple[int, int]

    @property
    def channels(self) -> int:
        return self.s.shape[0]

    @property
    def max_rank(self) -> int:
        """The g_c at which the approximation is exact: min(M, Kh*Kw)."""
        return self.s.shape[1]

    def scores(self, alpha: np.ndarray | None = None) -> np.ndarray:
        """alpha_c * sigma_{c,i}^2, shape (C, R); alpha = 1 is the plain Frobenius error."""
        weights = np.ones(self.channels) if alpha is None else np.asarray(alpha, np.float64)
        if weights.shape != (self.channels,) or np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError(f"alpha must be {self.channels} finite non-negative numbers")
        return weights[:, None] * self.s**2


def channel_svd(weight: torch.Tensor | np.ndarray) -> ChannelSVD:
    """Per-input-channel SVD of a conv weight (M, C, Kh, Kw), computed in float64."""
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, np.float64)
    if w.ndim != 4:
        raise ValueError(f"a 2-D convolution weight is 4-D (M, C, Kh, Kw); got shape {w.shape}")
    m, c, kh, kw = w.shape
    per_channel = w.reshape(m, c, kh * kw).transpose(1, 0, 2)  # (C, M, K^2)
    u, s, vt = np.linalg.svd(per_channel, full_matrices=False)
    return ChannelSVD(u, s, vt, (kh, kw))


def _ranked(scores: np.ndarray) -> np.ndarray:
    """Flat indices of `scores` from largest to smallest; ties by flat index (channel, then rank)."""
    flat = scores.reshape(-1)
    return np.lexsort((np.arange(flat.size), -flat))


def _allocation(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    counts = np.zeros(scores.shape[0], np.int64)
    np.add.at(counts, keep // scores.shape[1], 1)
    return counts


def mego(scores: np.ndarray, budget: int) -> np.ndarray:
    """Complexity-constrained minimum error: the allocation g (C,) with sum(g) = budget G."""
    if not 0 <= budget <= scores.size:
        raise ValueError(f"budget G must be in [0, {scores.size}]; got {budget}")
    return _allocation(scores, _ranked(scores)[:budget])


def lego(scores: np.ndarray, beta: float) -> np.ndarray:
    """Error-constrained minimum complexity: the smallest G whose weighted error is <= beta."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    order = _ranked(scores)
    dropped_error = np.cumsum(scores.reshape(-1)[order[::-1]])  # error after dropping the k smallest
    dropped = int(np.searchsorted(dropped_error, beta, side="right"))
    return _allocation(scores, order[: scores.size - dropped])


def weighted_error(scores: np.ndarray, allocation: np.ndarray) -> float:
    """sum_c sum_{i >= g_c} alpha_c sigma_{c,i}^2: the weighted error of keeping the leading g_c per channel."""
    ranks = np.arange(scores.shape[1])[None, :]
    return float(scores[ranks >= np.asarray(allocation)[:, None]].sum())


def factorize(svd: ChannelSVD, allocation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GDWS factors of an allocation: (depthwise (G, 1, Kh, Kw), pointwise (M, G), channel index (G,)).

    Depthwise filters are the unit-norm right singular vectors and the pointwise columns carry
    sigma: every intermediate channel then has the scale of its input channel, which keeps one
    per-tensor activation scale good for all of them when the graph is quantized.
    """
    allocation = np.asarray(allocation, np.int64)
    if allocation.shape != (svd.channels,) or allocation.min(initial=0) < 0 or allocation.max(initial=0) > svd.max_rank:
        raise ValueError(f"allocation must be {svd.channels} counts in [0, {svd.max_rank}]")
    index = np.repeat(np.arange(svd.channels), allocation)
    rank = np.concatenate([np.arange(g) for g in allocation]) if index.size else np.zeros(0, np.int64)
    depthwise = svd.v[index, rank, :].reshape(len(index), 1, *svd.kernel)
    pointwise = (svd.u[index, :, rank] * svd.s[index, rank][:, None]).T
    return depthwise, pointwise, index
