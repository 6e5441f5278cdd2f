import math

import pytest

from deploy_robust import limits
from deploy_robust.errors import UserError


def test_declared_sizes_are_checked_against_the_limit_and_the_stored_bytes():
    limits.check_declared_size(1 << 20, 10, "small", compressed=True)  # small parts may compress well
    limits.check_declared_size(1 << 30, 1 << 30, "stored", compressed=False)
    with pytest.raises(UserError, match="decompression bomb"):
        limits.check_declared_size(1 << 30, 1 << 20, "bomb", compressed=True)
    with pytest.raises(UserError, match="GiB limit"):
        limits.check_declared_size(limits.MAX_ARRAY_BYTES + 1, limits.MAX_ARRAY_BYTES + 1, "huge", compressed=False)


@pytest.mark.parametrize("value", [math.nan, math.inf, "1", True, None, 2.0])
def test_finite_number_refuses_what_is_not_a_finite_number_in_range(value):
    with pytest.raises(UserError):
        limits.finite_number(value, "x", 0.0, 1.0)
    assert limits.finite_number(0.5, "x", 0.0, 1.0) == 0.5


@pytest.mark.parametrize("value", [-1, 2**32, 1.0, True, "3"])
def test_whole_number_refuses_floats_bools_and_out_of_range(value):
    with pytest.raises(UserError):
        limits.whole_number(value, "seed", 0, limits.MAX_SEED)
    assert limits.whole_number(7, "seed", 0, limits.MAX_SEED) == 7


def test_pickle_memo_check_passes_real_pickles_and_refuses_a_forged_index():
    import pickle
    import struct

    honest = pickle.dumps({"a": [1, 2, [3, 4]], "b": ("x", b"y") * 50}, protocol=2)
    limits.check_pickle_memo(honest, "honest")
    forged = b"\x80\x02]r" + struct.pack("<I", 175399797) + b"."  # EMPTY_LIST, LONG_BINPUT 175399797, STOP
    with pytest.raises(UserError, match="memo slot 175399797 in a 9-byte stream"):
        limits.check_pickle_memo(forged, "forged")
    with pytest.raises(UserError, match="not a valid pickle stream"):
        limits.check_pickle_memo(b"\x80\x02\xfe", "garbage")
