"""Bring image arrays to N,C,H,W, using the model's expected shape when the layout is ambiguous."""

from __future__ import annotations

import numpy as np

from deploy_robust.errors import UserError


def to_nchw(x: np.ndarray, name: str, expect: tuple[int, int, int] | None = None) -> np.ndarray:
    if x.ndim == 3:  # N,H,W grayscale
        x = x[:, None]
    if x.ndim != 4:
        raise UserError(f"{name}: images must be N,H,W or N,C,H,W or N,H,W,C; got shape {x.shape}")
    nchw_ok, nhwc_ok = x.shape[1] in (1, 3, 4), x.shape[3] in (1, 3, 4)
    if expect is not None:
        if tuple(x.shape[1:]) == tuple(expect):
            return x
        if (x.shape[3], x.shape[1], x.shape[2]) == tuple(expect):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        raise UserError(
            f"{name}: images have shape {tuple(x.shape[1:])} but the model takes {'x'.join(map(str, expect))} (C,H,W)"
        )
    if nhwc_ok and not nchw_ok:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x
