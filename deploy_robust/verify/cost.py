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


# A Square query is one forward pass on the engine; a twin gradient step a forward and a backward pass. On the
# CIFAR ResNet-18 here the engine scored 204 images/s and the twin 89 gradient images/s (autoattack_referee.json).
ENGINE_QUERY_VS_GRADIENT_STEP = 0.4


def step_weight(attack) -> float:
    """One iteration of the attack on one point, in twin gradient steps: FAB takes two gradients a step, a Square
    query is one engine pass."""
    return {"square": ENGINE_QUERY_VS_GRADIENT_STEP, "fab": 2.0}.get(attack.method, 1.0)


def expected_steps(attack) -> float:
    """An attack's expected cost per point, in twin gradient steps (the weight of its share of verify's progress):
    steps (Square: queries) x restarts x targets x `step_weight`. An estimate for an ETA, not a count: early
    exits make real attacks cheaper, and APGD-T's rescue restarts (a few points) are left out."""
    p = attack.params
    iterations = p.get("queries", 1000) if attack.method == "square" else p.get("steps", 1)
    return float(iterations * p.get("restarts", 1) * p.get("targets", 1) * step_weight(attack))
