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
from deploy_robust.verify.attacks.square import averaged_scores, square_l2, square_linf
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
    "margin_loss",
    "pgd",
    "square_l2",
    "square_linf",
]


def _fgsm(
    model: TorchModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, eot: int = 1, seed: int = 0
) -> torch.Tensor:
    return fgsm(model, x, y, threat, eot=eot)  # deterministic: no seed


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
    when the first budget breaks any point (every gradient attack before it missed it, the symptom of masked
    gradients), the survivors get a second run of `escalate` queries; where Square finds nothing, it stops."""
    square = square_linf if threat.norm == "linf" else square_l2
    best, left = x.copy(), np.arange(len(x))
    runs = [(seed + restart, params) for restart in range(restarts)]
    while runs:
        run_seed, budget = runs.pop(0)
        found = square(scores, x[left], y[left], threat.eps, seed=run_seed, **budget)[0]
        best[left] = found
        still = left[scores(found).argmax(1) == y[left]]
        if escalate is not None and not runs and budget is params and still.size < left.size:
            runs.append((seed + restarts, params | {"queries": escalate}))  # it broke some: spend more on the rest
        left = still
        if left.size == 0:
            break
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
