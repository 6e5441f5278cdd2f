"""Square (Andriushchenko et al. 2020): score-based random search with square-shaped updates, L-inf and L2, run on
the engine itself; scores averaged over draws for a stochastic engine."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from deploy_robust.progress import check_deadline


def _random_search(
    scores: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    x_init: np.ndarray,
    queries: int,
    propose: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, int]:
    """Square's outer loop: per step, `propose(step, current, clean)` a candidate for every point
    not yet misclassified; keep it where the margin decreases. Returns the points and queries spent."""
    x_best = np.clip(x_init, 0, 1).astype(np.float32)
    margin = margins(scores(x_best), y)
    used = 1
    for i in range(queries - 1):
        active = np.flatnonzero(margin > 0)
        check_deadline(active.size)  # a tune's --time-budget stops an attack here; verify's progress counts it
        if active.size == 0:
            break
        candidate = np.clip(propose(i, x_best[active], x[active]), 0, 1).astype(np.float32)
        new_margin = margins(scores(candidate), y[active])
        used += 1
        better = new_margin < margin[active]
        x_best[active[better]] = candidate[better]
        margin[active[better]] = new_margin[better]
    return x_best, used


def square_linf(
    scores: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    queries: int = 1000,
    p_init: float = 0.8,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Square attack (Andriushchenko et al., ECCV 2020), L-inf, score-based: random square
    updates at the eps-ball's vertices, kept when the margin loss decreases (p_init 0.8 and
    the published halving schedule, as AutoAttack runs it). Only scores are
    used, so it runs on the engine itself. Returns the points and the queries spent."""
    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape

    def propose(i: int, current: np.ndarray, clean: np.ndarray) -> np.ndarray:
        side = max(1, min(h - 1, int(round(math.sqrt(_square_p(p_init, i, queries) * h * w)))))
        r, col = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        candidate = current.copy()
        window = eps * rng.choice([-1.0, 1.0], size=(len(current), c, 1, 1))
        candidate[:, :, r : r + side, col : col + side] = clean[:, :, r : r + side, col : col + side] + window
        return candidate

    return _random_search(scores, x, y, x + eps * rng.choice([-1.0, 1.0], size=(n, c, 1, w)), queries, propose)


def square_l2(
    scores: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    *,
    queries: int = 1000,
    p_init: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Square attack, L2 version (Andriushchenko et al., ECCV 2020): the perturbation is a grid of
    centred "pseudo-Gaussian" bumps of norm eps in total; each step picks two random windows,
    moves the L2 mass of both (plus any unused budget) into the first with a fresh two-lobed
    bump, empties the second, and keeps the change when the margin decreases."""
    rng = np.random.default_rng(seed)
    n, c, h, w = x.shape
    tile = max(1, h // 5)
    delta = np.zeros_like(x, dtype=np.float32)
    for r in range(0, h, tile):
        for col in range(0, w, tile):
            th, tw = min(tile, h - r), min(tile, w - col)
            delta[:, :, r : r + th, col : col + tw] = _pseudo_gaussian(th, tw) * rng.choice(
                [-1.0, 1.0], size=(n, c, 1, 1)
            )
    delta *= eps / np.sqrt((delta**2).sum(axis=(1, 2, 3), keepdims=True))

    def propose(i: int, current: np.ndarray, clean: np.ndarray) -> np.ndarray:
        side = max(3, min(h - 1, int(round(math.sqrt(_square_p(p_init, i, queries) * h * w)))))
        side = min(side, h - 1, w - 1) if min(h, w) > 3 else 1
        (r1, c1), (r2, c2) = (rng.integers(0, [h - side + 1, w - side + 1]) for _ in range(2))
        w1 = (slice(None), slice(None), slice(r1, r1 + side), slice(c1, c1 + side))
        w2 = (slice(None), slice(None), slice(r2, r2 + side), slice(c2, c2 + side))
        d = current - clean
        union = np.zeros_like(d, dtype=bool)
        union[w1] = True
        union[w2] = True
        mass = (np.where(union, d, 0) ** 2).sum(axis=(2, 3))  # per image and channel
        slack = np.maximum(eps**2 - (d**2).sum(axis=(1, 2, 3)), 0)[:, None] / c
        budget = np.sqrt(mass + slack)[:, :, None, None]
        grown = d[w1] + _two_lobed(side, rng) * rng.choice([-1.0, 1.0], size=(len(d), c, 1, 1)) * budget
        grown *= budget / np.maximum(np.sqrt((grown**2).sum(axis=(2, 3), keepdims=True)), 1e-12)
        d[w2] = 0
        d[w1] = grown
        return clean + d

    return _random_search(scores, x, y, x + delta, queries, propose)


def _pseudo_gaussian(h: int, w: int) -> np.ndarray:
    """Nested centred rectangles weighted 1/(k+1)^2, unit L2 norm: a cheap Gaussian-like bump."""
    bump = np.zeros((h, w), dtype=np.float32)
    cy, cx = h // 2, w // 2
    for k in range(max(h, w)):
        bump[max(cy - k, 0) : min(cy + k + 1, h), max(cx - k, 0) : min(cx + k + 1, w)] += 1.0 / (k + 1) ** 2
    return bump / np.sqrt((bump**2).sum())


def _two_lobed(side: int, rng: np.random.Generator) -> np.ndarray:
    """A window of two opposite-signed bumps (random orientation), unit L2 norm."""
    half = side // 2
    bump = np.zeros((side, side), dtype=np.float32)
    bump[:half] = _pseudo_gaussian(half, side) if half else 0
    bump[half:] = -_pseudo_gaussian(side - half, side)
    if rng.random() < 0.5:
        bump = bump.T
    return bump / np.sqrt((bump**2).sum())


def averaged_scores(scores: Callable[[np.ndarray], np.ndarray], draws: int) -> Callable[[np.ndarray], np.ndarray]:
    """Scores of a stochastic model for score-based attacks: the log of the member-averaged
    probabilities over `draws` runs (EOT for black-box attacks)."""

    def averaged(x: np.ndarray) -> np.ndarray:
        total = 0.0
        for _ in range(draws):
            z = scores(x).astype(np.float64)
            z = np.exp(z - z.max(1, keepdims=True))
            total = total + z / z.sum(1, keepdims=True)
        return np.log(total / draws + 1e-12)

    return averaged


def _square_p(p_init: float, i: int, total: int) -> float:
    """The published schedule: p halves at fixed fractions of a 10,000-query budget."""
    i = int(i / total * 10000)
    for limit, factor in (
        (10, 1),
        (50, 2),
        (200, 4),
        (500, 8),
        (1000, 16),
        (2000, 32),
        (4000, 64),
        (6000, 128),
        (8000, 256),
    ):
        if i <= limit:
            return p_init / factor
    return p_init / 512


def margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z_y - max_{j != y} z_j (negative once misclassified)."""
    true = logits[np.arange(len(y)), y]
    other = logits.copy()
    other[np.arange(len(y)), y] = -np.inf
    return true - other.max(1)
