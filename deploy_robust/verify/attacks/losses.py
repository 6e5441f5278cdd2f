"""The losses attacks ascend: cross-entropy, the margin max_{j != y} z_j - z_y, and DLR (Croce and Hein 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} z_j - z_y: positive exactly when misclassified (C&W margin)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - true


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce and Hein 2020): scale-invariant margin."""
    ordered = logits.sort(1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return (other.max(1).values - true) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce and Hein 2020): (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    ordered = logits.sort(1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    goal = logits.gather(1, target[:, None]).squeeze(1)
    return (goal - true) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


LOSSES = {"ce": lambda z, y: F.cross_entropy(z, y, reduction="none"), "margin": margin_loss, "dlr": dlr_loss}
