"""What an attack costs, counted: images through the twin S with an input gradient (a forward and a backward
pass), through S forward only, and through the engine E (queries and scoring).

The counts depend only on the attacks and the data, not on the machine or the number of processes, so they
are the portable half of a cost model: time on a device = counts x that device's per-image time (the
cluster plan in docs/verify.md uses them)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

FIELDS = ("S_forward_backward", "S_forward", "E_images")


class Passes:
    """Counters that wrap the models an attack calls."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(FIELDS), dtype=np.int64)

    def model(self, model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def counted(x: torch.Tensor) -> torch.Tensor:
            self.counts[0 if torch.is_grad_enabled() and x.requires_grad else 1] += len(x)
            return model(x)

        return counted

    def engine(self, infer: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def counted(x: np.ndarray) -> np.ndarray:
            self.counts[2] += len(x)
            return infer(x)

        return counted


def describe(counts: np.ndarray) -> dict[str, int]:
    return dict(zip(FIELDS, (int(c) for c in counts)))
