"""Adversarial attacks written from their papers, one family per file: FGSM and PGD (`pgd`), APGD with CE / DLR /
targeted losses (`apgd`), FAB untargeted and targeted (`fab`), Square L-inf and L2 (`square`); their losses
(`losses`) and the EOT gradient and best-candidate bookkeeping they share (`gradient`).

White-box attacks take `model`: a torch callable from [0, 1] images to logits (the twin S,
whose quantizers and other non-differentiable ops pass straight-through gradients), and
return, per example, the best candidate found: a misclassifying point when one was found,
else the point of highest loss. Square takes `scores`: a numpy callable (the engine E).
`eot` averages gradients over that many forward passes (for stochastic models).
Restarts and target classes after the first run only on the points not yet broken (as AutoAttack does).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from deploy_robust.verify.attacks.apgd import apgd, apgd_targeted, malt_targets
from deploy_robust.verify.attacks.fab import fab
from deploy_robust.verify.attacks.gradient import TorchModel, gradient
from deploy_robust.verify.attacks.losses import LOSSES, dlr_loss, dlr_targeted_loss, margin_loss
from deploy_robust.verify.attacks.pgd import fgsm, pgd
from deploy_robust.verify.attacks.square import averaged_scores, margins, square_l2, square_linf
from deploy_robust.verify.threat import ThreatModel

__all__ = [
    "BLACK_BOX",
    "CONFIRMING",
    "LOSSES",
    "WHITE_BOX",
    "apgd",
    "apgd_targeted",
    "averaged_scores",
    "dlr_loss",
    "dlr_targeted_loss",
    "fab",
    "fgsm",
    "gradient",
    "malt_targets",
    "margins",
    "margin_loss",
    "pgd",
    "square_l2",
    "square_linf",
]


def _fgsm(
    model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, eot: int = 1, seed: int = 0
) -> torch.Tensor:
    return fgsm(model, x, y, threat, eot=eot)  # deterministic: no seed


# Square's second budget goes to a point whose margin its first budget cut below this fraction of the clean
# margin: the search is still closing in. Chosen by measurement (docs/verify.md): on the three small referee
# models every point that 5,000 queries broke and 1,000 did not had kept at most 0.104 of its margin, and the
# fraction keeps 0.25 or less on 10-20% of the MNIST survivors and under 5% of the CIFAR ones.
ESCALATE_BELOW = 0.25


def _square(
    scores: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    threat: ThreatModel,
    *,
    seed: int = 0,
    restarts: int = 1,
    escalate: int | None = None,
    **params,
) -> np.ndarray:
    """Square for the threat's norm; each restart on the points the earlier ones left unbroken. With `escalate`:
    after the first budgets, each surviving point whose margin fell below ESCALATE_BELOW of its clean margin gets
    a fresh run of `escalate` queries. The rule is per point, so a point's budget does not depend on which other
    points share its batch."""
    square = square_linf if threat.norm == "linf" else square_l2
    best, left = x.copy(), np.arange(len(x))
    clean_margin = margins(scores(x), y) if escalate is not None else None
    for restart in range(restarts):
        best[left] = square(scores, x[left], y[left], threat.eps, seed=seed + restart, **params)[0]
        margin = margins(scores(best[left]), y[left])
        left, margin = left[margin > 0], margin[margin > 0]
        if left.size == 0:
            return best
    if clean_margin is not None:
        closing = left[margin < ESCALATE_BELOW * clean_margin[left]]
        if closing.size:
            best[closing] = square(
                scores, x[closing], y[closing], threat.eps, seed=seed + restarts, **(params | {"queries": escalate})
            )[0]
    return best


# The registered attacks, by the method name a suite's `Attack` gives. A white-box method is called as
# method(model, x, y, threat, seed=, eot=, **params) on torch tensors; a black-box one as
# method(scores, x, y, threat, seed=, **params) on numpy arrays. Adding an attack: write it in its family's file,
# register it here, place it in a suite (verify/suites.py).
WHITE_BOX: dict[str, Callable[..., torch.Tensor]] = {
    "fgsm": _fgsm,
    "pgd": pgd,
    "apgd": apgd,
    "apgd-t": apgd_targeted,
    "fab": fab,
}
BLACK_BOX: dict[str, Callable[..., np.ndarray]] = {"square": _square}
# The white-box methods that exit early per point and take `confirm` (the engine's check of a candidate).
CONFIRMING = frozenset({"pgd", "apgd", "apgd-t"})
