import numpy as np

from deploy_robust.calibrators.histogram import AbsHistogram


def test_counts_every_value_and_tracks_the_signed_range():
    hist = AbsHistogram(bins=16)
    hist.update(np.array([-1.0, 0.5, 0.25]))
    hist.update(np.array([], np.float32))
    assert hist.count == 3 and hist.counts.sum() == 3 and (hist.min, hist.max) == (-1.0, 0.5)


def test_growing_the_range_rebins_without_losing_counts():
    rng = np.random.default_rng(0)
    hist = AbsHistogram(bins=64)
    small, large = rng.random(1000), 10 * rng.random(1000)
    hist.update(small)
    hist.update(large)
    assert hist.counts.sum() == 2000 and hist.top >= large.max()
    # the mass below 1 is the small batch plus about a tenth of the large one
    below = hist.counts[hist.centres() < 1].sum()
    assert 1000 <= below <= 1200


def test_all_zero_data_lands_in_the_first_bin():
    hist = AbsHistogram(bins=8)
    hist.update(np.zeros(5))
    assert hist.counts[0] == 5 and hist.top == 0.0
