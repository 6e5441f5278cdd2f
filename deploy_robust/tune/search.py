"""The search: an additive model of a plan's latency and robustness loss, and the plans it makes optimal.

Each layer i at precision p changes the FP32 latency by `latency[i][p]` and costs `loss[i][p]` of
robustness (both measured: see tune.measure); a plan's predicted latency and loss are the sums. The
frontier is every plan no other plan beats on both (exhaustive where the space is small, else the
greedy path that lowers, one layer at a time, the layer saving the most latency per unit of loss).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from deploy_robust.tune.space import Plan

EXHAUSTIVE_LIMIT = 20_000  # plans; above it the greedy path


@dataclass(frozen=True)
class CostModel:
    fp32_latency: float
    latency: tuple[dict[str, float], ...]  # per layer: precision -> latency change against FP32 (ms)
    loss: tuple[dict[str, float], ...]  # per layer: precision -> robustness loss (>= 0)

    def predict(self, plan: Plan) -> tuple[float, float]:
        """(latency, loss) of a plan under the additive model."""
        return (
            self.fp32_latency + sum(self.latency[i][p] for i, p in enumerate(plan)),
            sum(self.loss[i][p] for i, p in enumerate(plan)),
        )


@dataclass(frozen=True)
class Point:
    plan: Plan
    latency: float
    loss: float


def frontier(model: CostModel) -> list[Point]:
    """The Pareto frontier of plans in (predicted latency, predicted loss), fastest first."""
    choices = [sorted(layer) for layer in model.latency]
    count = math.prod(len(c) for c in choices)
    plans = itertools.product(*choices) if count <= EXHAUSTIVE_LIMIT else _greedy_path(model)
    points = [Point(plan, *model.predict(plan)) for plan in plans]
    points.sort(key=lambda p: (p.latency, p.loss, p.plan))
    kept: list[Point] = []
    for point in points:
        if not kept or point.loss < kept[-1].loss - 1e-12:
            kept.append(point)
    return kept


def _greedy_path(model: CostModel) -> list[Plan]:
    """From all-FP32, repeatedly take the single-layer change with the best latency saved per loss added."""
    plan = ["fp32"] * len(model.latency)
    path = [tuple(plan)]
    while True:
        best, best_score = None, 0.0
        for i, options in enumerate(model.latency):
            for p, latency in options.items():
                saved = model.latency[i][plan[i]] - latency
                added = model.loss[i][p] - model.loss[i][plan[i]]
                if saved <= 0:
                    continue
                score = saved / max(added, 1e-9)
                if score > best_score:
                    best, best_score = (i, p), score
        if best is None:
            return path
        plan[best[0]] = best[1]
        path.append(tuple(plan))


def fastest_within(points: list[Point], budget: float) -> list[Point]:
    """The frontier's plans predicted within the loss budget, fastest first."""
    return [p for p in points if p.loss <= budget + 1e-12]
