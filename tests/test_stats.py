import pytest

from deploy_robust.stats import wilson_interval


def test_wilson_matches_known_values():
    # 50/100: the textbook Wilson interval is [0.4038, 0.5962].
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


def test_wilson_stays_inside_unit_interval_at_the_edges():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9
