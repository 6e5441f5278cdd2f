import numpy as np
import pytest

from deploy_robust.calibrators.histogram import AbsHistogram
from deploy_robust.calibrators.methods import METHODS, MSE, Entropy, MinMax, Percentile, make

RNG = np.random.default_rng(0)


def _relu_batches(n=8, size=20000, scale=1.0):
    return [np.maximum(RNG.standard_normal(size).astype(np.float32), 0) * scale for _ in range(n)]


def test_minmax_is_exact():
    c = MinMax()
    for x in ([-1.0, 2.0], [0.5, 3.5], [-4.0]):
        c.update(np.array(x))
    assert c.range() == (-4.0, 3.5)


def test_histogram_memory_is_fixed_and_counts_survive_growth():
    h = AbsHistogram(bins=256)
    h.update(np.linspace(0, 1, 1000))
    h.update(np.linspace(0, 10, 1000))  # the range grows: old counts are re-binned, none lost
    h.update(np.linspace(0, 100, 1000))
    assert h.counts.shape == (256,) and h.counts.sum() == 3000 and h.top >= 100


def test_percentile_threshold():
    c = Percentile(99.0)
    x = np.arange(10000, dtype=np.float32)
    c.update(x)
    low, high = c.range()
    assert low == 0 and high == pytest.approx(9900, rel=0.01)


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_clip_a_lone_outlier(method):
    c = make(method)
    for x in _relu_batches():
        c.update(x)
    c.update(np.array([40.0], np.float32))  # one value at ~10 sigma among 160,000
    low, high = c.range()
    assert low == 0.0 and 2.0 < high < 10.0


def test_mse_weighs_clipping_against_rounding():
    # With 256 levels rounding is cheap, so one far outlier is worth keeping...
    keep = make("mse")
    for x in _relu_batches():
        keep.update(x)
    keep.update(np.array([40.0], np.float32))
    assert keep.range()[1] > 30
    # ...while with 16 levels the rounding error of a wide range outweighs clipping one value.
    coarse = MSE(levels=16)
    for x in _relu_batches():
        coarse.update(x)
    coarse.update(np.array([40.0], np.float32))
    assert coarse.range()[1] < 10


def test_entropy_is_not_fooled_by_the_zero_spike_of_relu():
    # Half the values are exactly 0 after ReLU; the threshold must still cover the bulk (~3.5 sigma).
    c = Entropy(levels=256)
    for x in _relu_batches():
        c.update(x)
    assert c.range()[1] > 2.5


def test_mse_prefers_full_range_without_outliers():
    c = MSE()
    c.update(RNG.uniform(0, 1, 50000).astype(np.float32))
    assert c.range()[1] > 0.9


def test_signed_tensors_keep_their_negative_side():
    c = make("mse")
    c.update(RNG.standard_normal(50000).astype(np.float32))
    low, high = c.range()
    assert low < -2 and high > 2


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown calibration method"):
        make("magic")
    assert set(METHODS) == {"minmax", "percentile", "entropy", "mse"}
