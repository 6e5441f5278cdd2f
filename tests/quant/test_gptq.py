"""Error-compensating (GPTQ) rounding: same grid as round-to-nearest, smaller output error."""

import numpy as np
import pytest

from deploy_robust.quant.gptq import gptq_round
from deploy_robust.quant.scheme import quantize_per_channel


def _correlated_inputs(rng, rows=2000, k=64):
    """Inputs whose columns co-vary (as neighbouring pixels and channels do)."""
    mixing = rng.normal(size=(k, k)) * 0.3 + np.eye(k)
    return np.maximum(rng.normal(size=(rows, k)) @ mixing, 0).astype(np.float32)


@pytest.mark.parametrize("bits,levels", [(8, 63), (8, 127), (4, 7)])
def test_gptq_keeps_the_grid_and_lowers_the_output_error(bits, levels):
    rng = np.random.default_rng(0)
    x = _correlated_inputs(rng)
    w = rng.normal(size=(32, 64)).astype(np.float32)
    nearest, scale = quantize_per_channel(w, bits, 0, levels)
    q = gptq_round(w, scale, levels, x.T.astype(np.float64) @ x)
    assert q.dtype == np.int8 and q.shape == w.shape and np.abs(q).max() <= levels

    def output_error(codes):
        return np.linalg.norm(x @ (w - codes * scale[:, None]).T)

    assert output_error(q) < 0.8 * output_error(nearest)
    # the grid is the same: most weights keep their nearest code, the rest move one step
    assert np.abs(q.astype(int) - nearest).max() <= 2 and (q == nearest).mean() > 0.5


def test_gptq_is_round_to_nearest_without_input_statistics_and_for_dead_inputs():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 10)).astype(np.float32)
    nearest, scale = quantize_per_channel(w, 8)
    np.testing.assert_array_equal(gptq_round(w, scale, 127, np.zeros((10, 10))), nearest)
    # inputs 3 and 7 never fire: their weights cannot change the output, they round to nearest
    x = rng.normal(size=(500, 10))
    x[:, [3, 7]] = 0
    q = gptq_round(w, scale, 127, x.T @ x)
    np.testing.assert_array_equal(q[:, [3, 7]], nearest[:, [3, 7]])


def test_gptq_with_uncorrelated_inputs_changes_little():
    """With H diagonal no error can be moved onto another column: GPTQ is round-to-nearest."""
    rng = np.random.default_rng(2)
    w = rng.normal(size=(16, 24)).astype(np.float32)
    nearest, scale = quantize_per_channel(w, 4)
    q = gptq_round(w, scale, 7, np.diag(rng.uniform(0.5, 2.0, 24)), damping=0.0)
    np.testing.assert_array_equal(q, nearest)
