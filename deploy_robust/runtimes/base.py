"""The one interface every backend implements (after Polygraphy's runners): activate / infer / deactivate."""

from __future__ import annotations

import abc

import numpy as np


class Runner(abc.ABC):
    """Runs a classifier: float32 [0, 1] images (N,C,H,W) -> float32 logits (N, classes).

    A runner whose graph has a fixed batch size gets any batch: `infer` splits and pads.
    """

    name: str = "runner"
    fixed_batch: int | None = None

    def activate(self) -> None:
        """Load what is needed to run (sessions, engines); cheap to call twice."""

    def deactivate(self) -> None:
        """Free what `activate` loaded."""

    @abc.abstractmethod
    def _infer(self, x: np.ndarray) -> np.ndarray:
        """Run one batch that the backend accepts as is."""

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return self._infer(x)
        outputs = []
        for start in range(0, len(x), self.fixed_batch):
            chunk = x[start:start + self.fixed_batch]
            short = self.fixed_batch - len(chunk)
            if short:
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), np.float32)])
            outputs.append(self._infer(chunk)[:self.fixed_batch - short])
        return np.concatenate(outputs)

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()
