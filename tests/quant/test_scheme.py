import numpy as np

from deploy_robust.quant.scheme import activation_params, quantize_bias, quantize_blockwise, quantize_per_channel


def test_unsigned_activation_params_put_zero_on_the_grid():
    p = activation_params(-1.0, 3.0, signed=False)
    assert p.dtype == np.uint8 and 0 <= p.zero_point <= 255
    assert np.isclose(p.scale, 4.0 / 255)
    assert activation_params(0.0, 6.0, signed=False).zero_point == 0  # post-ReLU: zero point 0


def test_signed_activation_params_are_symmetric():
    p = activation_params(-1.0, 3.0, signed=True)
    assert p.zero_point == 0 and np.isclose(p.scale, 3.0 / 127)


def test_per_channel_weights_and_reduced_range():
    w = np.array([[1.0, -0.5], [0.01, 0.02]], np.float32)
    q, s = quantize_per_channel(w, 8)
    assert q.dtype == np.int8 and q[0, 0] == 127 and q[1, 1] == 127
    np.testing.assert_allclose(q * s[:, None], w, atol=s.max() / 2)
    q7, _ = quantize_per_channel(w, 8, levels=63)
    assert np.abs(q7).max() == 63
    q4, _ = quantize_per_channel(w, 4)
    assert np.abs(q4).max() == 7


def test_blockwise_scales_per_block():
    w = np.concatenate([np.full((32, 3), 0.1), np.full((32, 3), 10.0)]).astype(np.float32)
    q, s = quantize_blockwise(w, 4, 32, axis=0)
    assert s.shape == (2, 3) and np.allclose(s[0], 0.1 / 7) and np.allclose(s[1], 10 / 7)
    assert (q == 7).all()


def test_bias_at_input_times_weight_scale():
    qb, scale = quantize_bias(np.array([0.5, -1.0]), np.float32(0.01), np.array([0.1, 0.2], np.float32))
    np.testing.assert_allclose(scale, [0.001, 0.002])
    assert qb.tolist() == [500, -500]


def test_a_nearly_dead_filter_keeps_its_bias_inside_int32():
    from deploy_robust.quant.scheme import BIAS_LIMIT, bias_safe_min_scale

    # Seen in MadryCNN_no_maxpool_tiny: a filter with max |w| = 2.3e-6 and bias -1.25.
    w = np.stack([np.full((1, 5, 5), 2.3e-6), np.full((1, 5, 5), 0.5)]).astype(np.float32)
    bias = np.array([-1.25, 0.3], np.float32)
    sx = np.float32(1 / 255)
    q, s = quantize_per_channel(w, 8, levels=63, min_scale=bias_safe_min_scale(bias, sx))
    qb, _ = quantize_bias(bias, sx, s)
    assert np.abs(qb.astype(np.int64)).max() <= BIAS_LIMIT
    assert s[1] == np.float32(0.5 / 63)  # healthy channels keep their scale
