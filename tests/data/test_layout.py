import numpy as np
import pytest

from deploy_robust.data.layout import to_nchw
from deploy_robust.errors import UserError


def test_grayscale_nhw_gets_a_channel_axis():
    assert to_nchw(np.zeros((5, 28, 28)), "x").shape == (5, 1, 28, 28)


def test_nhwc_is_transposed_when_the_model_expects_chw():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    out = to_nchw(x, "x", expect=(3, 4, 4))
    assert out.shape == (2, 3, 4, 4) and out[1, 2, 3, 1] == x[1, 3, 1, 2] and out.flags.c_contiguous


def test_unambiguous_nhwc_without_an_expected_shape():
    assert to_nchw(np.zeros((2, 32, 32, 3)), "x").shape == (2, 3, 32, 32)


def test_a_shape_that_fits_neither_layout_is_one_clear_error():
    with pytest.raises(UserError, match="model takes 3x32x32"):
        to_nchw(np.zeros((2, 1, 28, 28)), "x", expect=(3, 32, 32))
    with pytest.raises(UserError, match="N,H,W or N,C,H,W"):
        to_nchw(np.zeros((2, 3)), "x")
