"""Error-compensating weight rounding (GPTQ: Frantar, Ashkboos, Hoefler and Alistarh, ICLR 2023).

Round-to-nearest rounds every weight on its own. GPTQ rounds the input columns of a layer one
at a time and moves each rounding error onto the columns not yet rounded, weighted by how the
layer's inputs co-vary, so that the layer's output on calibration data, ||X W^T - X Q^T||^2,
stays small rather than each weight's own error. With H = X^T X (plus damping) and U the upper
Cholesky factor of H^-1, rounding column i leaves the error e = (w_i - q_i) / U_ii, and the
optimal correction of the remaining columns j > i is w_j -= e U_ij. Columns go in decreasing
order of their input energy (diag H), which helps most at low bit widths; updates are applied
block by block so that most of the work is one matrix product per block.

The scales and the integer grid are the caller's (per channel, symmetric, +-levels): only the
choice of rounding direction changes, so the exported graph and its runtime kernels are the same.
"""

from __future__ import annotations

import numpy as np

from deploy_robust.progress import check_deadline

DAMPING = 0.01  # fraction of the mean diagonal added to H: keeps it invertible and the updates tame
_BLOCK = 128


def gptq_round(
    weight: np.ndarray, scale: np.ndarray, levels: int, gram: np.ndarray, damping: float = DAMPING
) -> np.ndarray:
    """Integer weights (int8 array shaped like `weight`, (out, k)) on the grid q * scale[out], |q| <= levels,
    chosen to keep the output error on inputs with Gram matrix `gram` (k, k) small."""
    scale = scale.astype(np.float64)
    nearest = np.clip(np.round(weight / scale[:, None]), -levels, levels)
    h = np.array(gram, np.float64)
    energy = np.diag(h).copy()
    if not (energy > 0).any():
        return nearest.astype(np.int8)  # no input reached this layer: nothing to weigh the errors by
    dead = np.flatnonzero(energy <= 0)
    h[dead, dead] = 1.0  # a column that never sees input: its rounding cannot move the output
    h[np.diag_indices_from(h)] += damping * energy.mean()
    order = np.argsort(-energy, kind="stable")
    h = h[np.ix_(order, order)]
    w = weight.astype(np.float64)[:, order]
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: H^-1 = U^T U
    q = np.empty_like(w)
    k = w.shape[1]
    for start in range(0, k, _BLOCK):
        check_deadline()  # a tune's --time-budget stops a large layer's rounding here
        stop = min(start + _BLOCK, k)
        errors = np.empty((w.shape[0], stop - start))
        for i in range(start, stop):
            q[:, i] = np.clip(np.round(w[:, i] / scale), -levels, levels)
            error = (w[:, i] - q[:, i] * scale) / u[i, i]
            w[:, i + 1 : stop] -= np.outer(error, u[i, i + 1 : stop])
            errors[:, i - start] = error
        w[:, stop:] -= errors @ u[start:stop, stop:]
    result = np.empty_like(q)
    result[:, order] = q
    return result.astype(np.int8)
