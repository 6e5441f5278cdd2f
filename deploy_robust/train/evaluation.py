"""The end-of-training report: clean accuracy and PGD accuracy of a torch model on a test set."""

from __future__ import annotations

import torch
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.stats import wilson_interval
from deploy_robust.verify.attacks import pgd
from deploy_robust.verify.threat import ThreatModel


def clean_and_pgd(
    model: nn.Module,
    dataset: Dataset,
    eps: float,
    *,
    steps: int = 20,
    restarts: int = 2,
    batch_size: int = 250,
    seed: int = 0,
) -> dict:
    """Clean and L-inf PGD-`steps` (`restarts` random starts, step 2.5 eps / steps) accuracy on
    `dataset`, with 95% Wilson intervals. `model` takes [0, 1] images. A quick training-time
    figure, not a verification: `deploy-robust verify` runs the full adaptive suite."""
    threat = ThreatModel("linf", eps)
    model = model.eval()
    clean = robust = 0
    x_all, y_all = torch.from_numpy(dataset.as_float()), torch.from_numpy(dataset.labels).long()
    for start in range(0, len(dataset), batch_size):
        x, y = x_all[start : start + batch_size], y_all[start : start + batch_size]
        with torch.no_grad():
            right = model(x).argmax(1) == y
        clean += int(right.sum())
        if eps > 0 and right.any():
            x_adv = pgd(model, x[right], y[right], threat, steps=steps, restarts=restarts, seed=seed + start)
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == y[right]).sum())
        elif eps == 0:
            robust += int(right.sum())
    n = len(dataset)
    return {
        "n": n,
        "eps": eps,
        "attack": f"PGD-{steps} x {restarts} restarts (CE)",
        "clean": clean / n,
        "clean_ci95": list(wilson_interval(clean, n)),
        "pgd": robust / n,
        "pgd_ci95": list(wilson_interval(robust, n)),
    }
