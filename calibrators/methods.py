"""Range calibrators for activation tensors: min-max, percentile, entropy (KL divergence), MSE.

Each consumes batches of one tensor with `update(x)` and returns the range to quantize
with from `range()`, as (low, high). All keep bounded state: min/max, or one `AbsHistogram`.
Histogram methods pick a threshold T on |x|; the range is then [max(min, -T), T] clipped
to what was seen, so a non-negative tensor (after ReLU) keeps low = 0.
"""

from __future__ import annotations

import numpy as np

from deploy_robust.calibrators.histogram import AbsHistogram

METHODS = ("minmax", "percentile", "entropy", "mse")


class MinMax:
    name = "minmax"

    def __init__(self) -> None:
        self.min, self.max = np.inf, -np.inf

    def update(self, x: np.ndarray) -> None:
        self.min = min(self.min, float(np.min(x)))
        self.max = max(self.max, float(np.max(x)))

    def range(self) -> tuple[float, float]:
        return self.min, self.max


class _HistogramMethod:
    name = "histogram"

    def __init__(self, bins: int = 2048, levels: int = 256) -> None:
        self.hist = AbsHistogram(bins)
        self.levels = levels  # quantization levels spanning [0, T]: 256 for u8 of a non-negative tensor

    def update(self, x: np.ndarray) -> None:
        self.hist.update(x)

    def threshold(self) -> float:
        raise NotImplementedError

    def range(self) -> tuple[float, float]:
        h = self.hist
        if h.count == 0:
            return 0.0, 0.0
        t = min(self.threshold(), max(abs(h.min), abs(h.max)))
        return max(h.min, -t), min(h.max, t)


class Percentile(_HistogramMethod):
    """T = the given percentile of |x| (default 99.99)."""

    name = "percentile"

    def __init__(self, percentile: float = 99.99, bins: int = 2048, levels: int = 256) -> None:
        super().__init__(bins, levels)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100]; got {percentile}")
        self.percentile = percentile

    def threshold(self) -> float:
        cdf = np.cumsum(self.hist.counts)
        index = int(np.searchsorted(cdf, cdf[-1] * self.percentile / 100.0))
        return (min(index, self.hist.bins - 1) + 1) * self.hist.width


class Entropy(_HistogramMethod):
    """TensorRT's entropy calibration: the T minimizing KL(P || Q) between the clipped
    distribution P and its quantization Q to `levels` bins (Migacz, GTC 2017)."""

    name = "entropy"

    def __init__(self, bins: int = 2048, levels: int = 128) -> None:
        super().__init__(bins, levels)

    def threshold(self) -> float:
        counts = self.hist.counts.copy()
        # Post-ReLU tensors hold a spike of exact zeros in bin 0; left in, it dominates the
        # divergence and drives the threshold far too low. Flatten it to its neighbour.
        counts[0] = counts[1]
        best, best_i = np.inf, self.hist.bins
        for i in range(self.levels, self.hist.bins + 1):
            p = counts[:i].copy()
            p[-1] += counts[i:].sum()  # outliers clipped into the last bin
            q = _quantize_histogram(counts[:i], self.levels)
            divergence = _kl(p, q)
            if divergence < best:
                best, best_i = divergence, i
        return best_i * self.hist.width


class MSE(_HistogramMethod):
    """T minimizing the expected squared quantization error (rounding plus clipping) over the histogram."""

    name = "mse"

    def __init__(self, bins: int = 2048, levels: int = 256, candidates: int = 128) -> None:
        super().__init__(bins, levels)
        self.candidates = candidates

    def threshold(self) -> float:
        centres, counts = self.hist.centres(), self.hist.counts
        top = self.hist.top
        best_t, best_err = top, np.inf
        for t in np.linspace(top / self.candidates, top, self.candidates):
            step = t / (self.levels - 1)
            q = np.minimum(np.round(centres / step) * step, t)
            err = float(np.dot(counts, (centres - q) ** 2))
            if err < best_err:
                best_t, best_err = t, err
        return float(best_t)


def _quantize_histogram(p: np.ndarray, levels: int) -> np.ndarray:
    """Merge `p` into `levels` groups and spread each group's mass evenly over its non-empty bins."""
    edges = np.linspace(0, len(p), levels + 1).astype(np.int64)
    starts = edges[:-1]
    group = np.repeat(np.arange(levels), np.diff(edges))
    nonzero = p > 0
    sums = np.add.reduceat(p, starts)
    filled = np.add.reduceat(nonzero.astype(np.float64), starts)
    per_bin = np.divide(sums, filled, out=np.zeros_like(sums), where=filled > 0)
    return np.where(nonzero, per_bin[group], 0.0)


def _kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    """KL(p || q) with q smoothed: empty bins of q that p needs (clipped outliers) get `eps`
    of mass instead of making every clipping threshold infinitely bad."""
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return np.inf
    p, q = p / p_sum, q / q_sum
    mask = p > 0
    empty = mask & (q == 0)
    if empty.any():
        q = q * (1 - eps * empty.sum() / max(1, (q > 0).sum()))
        q = np.where(empty, eps, q)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def make(method: str, *, percentile: float = 99.99, signed: bool = False):
    """A fresh calibrator; `signed` (symmetric int8, TensorRT) halves the levels per side."""
    if method == "minmax":
        return MinMax()
    if method == "percentile":
        return Percentile(percentile, levels=128 if signed else 256)
    if method == "entropy":
        return Entropy(levels=128 if signed else 256)
    if method == "mse":
        return MSE(levels=128 if signed else 256)
    raise ValueError(f"unknown calibration method '{method}'; choose from {', '.join(METHODS)}")
