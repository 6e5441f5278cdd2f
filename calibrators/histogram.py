"""A streaming histogram of |x| with a fixed number of bins: memory independent of how much data it sees.

When a batch exceeds the current range, the range grows and the old counts are re-binned
into the wider bins (each old bin's count goes to the new bin holding its centre).
"""

from __future__ import annotations

import numpy as np


class AbsHistogram:
    def __init__(self, bins: int = 2048) -> None:
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.float64)
        self.top = 0.0  # upper edge of the last bin
        self.min = np.inf
        self.max = -np.inf
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        self.count += x.size
        magnitude = np.abs(x)
        peak = float(magnitude.max())
        if peak > self.top:
            self._grow(peak)
        if self.top == 0.0:
            self.counts[0] += x.size
            return
        index = np.minimum((magnitude * (self.bins / self.top)).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(index, minlength=self.bins)

    def _grow(self, peak: float) -> None:
        new_top = peak if self.top == 0.0 else max(peak, 2 * self.top)
        if self.counts.any() and self.top > 0:
            centres = (np.arange(self.bins) + 0.5) * (self.top / self.bins)
            index = np.minimum((centres * (self.bins / new_top)).astype(np.int64), self.bins - 1)
            self.counts = np.bincount(index, weights=self.counts, minlength=self.bins)
        self.top = new_top

    @property
    def width(self) -> float:
        return self.top / self.bins

    def centres(self) -> np.ndarray:
        return (np.arange(self.bins) + 0.5) * self.width
