import itertools
import random

from deploy_robust.tune import search
from deploy_robust.tune.search import CostModel, fastest_within, frontier


def _model(layers, seed=0):
    rng = random.Random(seed)
    latency = tuple({"fp32": 0.0, "int8": -rng.uniform(0, 2), "int4": -rng.uniform(0, 3)} for _ in range(layers))
    loss = tuple({"fp32": 0.0, "int8": rng.uniform(0, 0.01), "int4": rng.uniform(0, 0.05)} for _ in range(layers))
    return CostModel(10.0, latency, loss)


def test_the_frontier_holds_the_brute_force_optimum_for_every_budget():
    model = _model(5)
    everything = [(plan, *model.predict(plan)) for plan in itertools.product(("fp32", "int4", "int8"), repeat=5)]
    points = frontier(model)
    assert [p.latency for p in points] == sorted(p.latency for p in points)
    assert all(a.loss > b.loss for a, b in zip(points, points[1:]))  # each slower plan loses strictly less
    for budget in (0.0, 0.005, 0.01, 0.02, 0.05, 1.0):
        best = min((latency for _, latency, loss in everything if loss <= budget))
        assert fastest_within(points, budget)[0].latency == best


def test_large_spaces_take_the_greedy_path_and_it_is_monotone(monkeypatch):
    monkeypatch.setattr(search, "EXHAUSTIVE_LIMIT", 10)
    model = _model(8, seed=1)
    points = frontier(model)
    assert points[-1].plan == ("fp32",) * 8 and len(points) > 3
    assert all(a.latency <= b.latency and a.loss >= b.loss for a, b in zip(points, points[1:]))
