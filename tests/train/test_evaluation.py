import numpy as np
import torch
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.train.evaluation import clean_and_pgd


class _Threshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5: a margin of |mean - 0.5| against any attack."""

    def forward(self, x):
        score = (x.flatten(1).mean(1) - 0.5) * 100
        return torch.stack([-score, score], 1)


def test_pgd_breaks_exactly_the_points_within_eps_of_the_boundary():
    means = np.array([0.1, 0.45, 0.55, 0.9], np.float32)
    images = np.broadcast_to(means[:, None, None, None], (4, 1, 2, 2)).copy()
    data = Dataset(images, np.array([0, 0, 1, 1]), "toy")
    result = clean_and_pgd(_Threshold(), data, eps=0.1, steps=10, restarts=1)
    assert result["clean"] == 1.0 and result["pgd"] == 0.5  # the two points 0.05 from 0.5 flip
    lo, hi = result["pgd_ci95"]
    assert lo < 0.5 < hi and result["n"] == 4
    assert clean_and_pgd(_Threshold(), data, eps=0.0)["pgd"] == 1.0
