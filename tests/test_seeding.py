import random

import numpy as np
import torch

from deploy_robust.seeding import seed_everything


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_same_seed_same_draws_in_every_generator():
    seed_everything(7)
    first = _draws()
    seed_everything(7)
    assert _draws() == first
    seed_everything(8)
    assert _draws() != first


def test_seeds_beyond_numpys_range_are_accepted():
    seed_everything(2**40 + 3)  # numpy takes it modulo 2^32
