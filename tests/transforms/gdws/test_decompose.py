"""The per-layer mathematics: exact at full rank, the error identity, and MEGO = LEGO at equal G."""

import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.transforms.gdws import GDWSConv2d, channel_svd, factorize, lego, mego, weighted_error


def _gdws_from(conv: nn.Conv2d, allocation) -> GDWSConv2d:
    depthwise, pointwise, _ = factorize(channel_svd(conv.weight), np.asarray(allocation))
    layer = GDWSConv2d.like(conv, allocation).double()
    with torch.no_grad():
        layer.depthwise.weight.copy_(torch.from_numpy(depthwise))
        layer.pointwise.weight.copy_(torch.from_numpy(pointwise).reshape(conv.out_channels, -1, 1, 1))
        layer.pointwise.bias.copy_(conv.bias)
    return layer


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("kernel", [3, 4])
def test_full_rank_gdws_equals_the_convolution(stride, padding, kernel):
    torch.manual_seed(stride * 10 + padding + kernel)
    conv = nn.Conv2d(6, 20, kernel, stride, padding).double()  # M = 20 > K^2 = 9: full rank is g_c = K^2
    layer = _gdws_from(conv, [channel_svd(conv.weight).max_rank] * 6)
    x = torch.randn(2, 6, 11, 11, dtype=torch.float64)
    expected = conv(x)
    assert layer(x).shape == expected.shape
    assert (layer(x) - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_full_rank_with_fewer_outputs_than_kernel_taps():
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 4, 3, padding=1, dilation=2).double()  # M = 4 < K^2: rank 4 is exact
    svd = channel_svd(conv.weight)
    assert svd.max_rank == 4
    layer = _gdws_from(conv, [4] * 5)
    x = torch.randn(1, 5, 9, 9, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_weighted_error_is_the_sum_of_dropped_scores_and_within_beta(seed):
    rng = np.random.default_rng(seed)
    m, c, k = rng.integers(3, 24), rng.integers(2, 12), int(rng.choice([2, 3, 5]))
    weight = rng.standard_normal((m, c, k, k)) * rng.uniform(0.1, 3)
    alpha = rng.uniform(0, 5, c)
    svd = channel_svd(weight)
    scores = svd.scores(alpha)
    beta = rng.uniform(0, scores.sum())
    allocation = lego(scores, beta)
    error = weighted_error(scores, allocation)
    assert error <= beta * (1 + 1e-12)
    # the error equals the alpha-weighted Frobenius error of the reconstruction, computed directly
    depthwise, pointwise, index = factorize(svd, allocation)
    approx = np.zeros_like(weight)
    for j, channel in enumerate(index):
        approx[:, channel] += np.outer(pointwise[:, j], depthwise[j, 0].reshape(-1)).reshape(m, k, k)
    direct = sum(alpha[ch] * np.sum((weight[:, ch] - approx[:, ch]) ** 2) for ch in range(c))
    assert direct == pytest.approx(error, rel=1e-9, abs=1e-12)
    # and LEGO's G is the smallest: one component fewer (in the ranked order) would exceed beta
    if allocation.sum() > 0:
        smaller = mego(scores, int(allocation.sum()) - 1)
        assert weighted_error(scores, smaller) > beta


@pytest.mark.parametrize("seed", range(8))
def test_mego_and_lego_give_the_same_allocation_for_the_same_g(seed):
    rng = np.random.default_rng(100 + seed)
    weight = rng.standard_normal((16, 8, 3, 3))
    scores = channel_svd(weight).scores(rng.uniform(0.5, 2, 8))
    for beta in np.quantile(np.cumsum(np.sort(scores.reshape(-1))), [0.0, 0.1, 0.5, 0.9]):
        by_error = lego(scores, float(beta))
        assert np.array_equal(mego(scores, int(by_error.sum())), by_error)


def test_ties_break_the_same_way_in_both_allocations():
    scores = np.ones((4, 3))  # every score equal: only the tie order decides
    for g in range(13):
        allocation = mego(scores, g)
        assert allocation.sum() == g
        beta = weighted_error(scores, allocation)
        assert np.array_equal(lego(scores, beta), allocation)


def test_alpha_weights_the_allocation_towards_sensitive_channels():
    rng = np.random.default_rng(3)
    svd = channel_svd(rng.standard_normal((8, 2, 3, 3)))
    plain = mego(svd.scores(), 6)
    favoured = mego(svd.scores(np.array([100.0, 1.0])), 6)
    assert favoured.tolist() == [6, 0] and plain[1] > 0


def test_bad_inputs_are_refused():
    svd = channel_svd(np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError):
        svd.scores(np.array([1.0, -1.0]))
    with pytest.raises(ValueError):
        mego(svd.scores(), 100)
    with pytest.raises(ValueError):
        lego(svd.scores(), -1.0)
    with pytest.raises(ValueError):
        factorize(svd, np.array([5, 0]))
