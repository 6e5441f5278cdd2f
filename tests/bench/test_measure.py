import time

import numpy as np
import pytest

from deploy_robust.bench.measure import latency_stats, make_inputs, measure, peak_rss_mib
from deploy_robust.runtimes.base import Runner


class _Recording(Runner):
    """A runner whose cost is known: it sleeps 1 ms per call and records which buffer it saw."""

    name = "recording"

    def __init__(self):
        self.seen = []

    def _infer_all(self, x):
        self.seen.append(float(x.reshape(-1)[0]))
        time.sleep(0.001)
        return [np.zeros((len(x), 2), np.float32)]


def test_latency_stats():
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["p50"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 100.0
    assert stats["p90"] > stats["p50"] and stats["p99"] > stats["p90"]


def test_inputs_are_distinct_buffers():
    inputs = make_inputs((3, 4, 4), 2, buffers=4)
    assert len({x.tobytes() for x in inputs}) == 4


def test_warmup_is_excluded_and_buffers_rotate():
    runner = _Recording()
    result = measure(runner, (1, 2, 2), batch=4, warmup=3, iters=8)
    assert result.iterations == 8 and len(runner.seen) == 3 + 8  # warm-up, then timed calls only
    timed = runner.seen[3:11]
    assert len(set(timed)) == 4  # four buffers, rotated
    assert result.latency_ms["min"] >= 1.0
    assert result.throughput == pytest.approx(4 * 8 / (sum(result.latencies_ms) / 1e3))


def test_duration_budget_with_a_minimum_of_iterations():
    result = measure(_Recording(), (1, 2, 2), batch=1, warmup=0, duration=0.0, min_iters=5)
    assert result.iterations == 5


def test_peak_rss_is_reported():
    assert peak_rss_mib() > 10


class _Stalling(_Recording):
    """1 ms per call, and a 12 ms stall every 10th call: a tail a noisy machine gives."""

    def _infer_all(self, x):
        out = super()._infer_all(x)
        if len(self.seen) % 10 == 0:
            time.sleep(0.012)
        return out


def test_timing_stops_when_the_mean_settles_or_at_the_cap_with_a_warning():
    result = measure(_Recording(), (1, 2, 2), batch=1, warmup=2, duration=0.05, min_iters=20)
    assert result.iterations >= 20 and result.seconds >= 0.05
    if result.stability["stopped_by"] == "settled":  # the usual case on a quiet machine
        assert result.stability["relative_sem_pct"] <= 1.0 and result.seconds < 3 * 0.05 + 0.05
    else:  # a loaded machine: timed to the cap, and the figure comes with its warning
        assert result.stability["stopped_by"] == "time cap" and result.seconds >= 3 * 0.05
        assert any("did not settle" in w or "p99 is" in w for w in result.warnings)


def test_a_long_tail_is_named_a_warning_and_timing_goes_on_to_the_cap():
    result = measure(_Stalling(), (1, 2, 2), batch=1, warmup=0, duration=0.1, min_iters=20)
    assert result.stability["p99_over_p50"] > 2
    assert any("p99 is" in w and "noisy" in w for w in result.warnings)
    assert result.stability["stopped_by"] in ("settled", "time cap") and result.seconds >= 0.1


def test_rounds_that_disagree_are_named():
    from deploy_robust.bench.measure import stability_of

    stability, warnings = stability_of([1.0] * 30, "settled", [100.0, 100.0, 80.0])
    assert stability["round_spread_pct"] == 20.0 and any("rounds differ by 20%" in w for w in warnings)
    assert stability_of([1.0] * 30, "settled", [100.0, 101.0, 99.0])[1] == []
