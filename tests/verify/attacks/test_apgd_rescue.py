"""APGD-T's rescue restarts: more random starts only for the points whose margin nearly crossed."""

import torch
from torch import nn

from deploy_robust.verify import attacks
from deploy_robust.verify.attacks.apgd import _nearly_crossed
from deploy_robust.verify.attacks.gradient import Best
from deploy_robust.verify.cost import Passes
from deploy_robust.verify.threat import ThreatModel

THREAT = ThreatModel("linf", 0.05)


def test_only_the_points_that_nearly_crossed_are_picked_with_the_class_nearest_at_their_best_point():
    identity = nn.Identity()  # logits are the inputs: margins can be written down
    x = torch.tensor([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    y = torch.zeros(3, dtype=torch.long)
    best = Best(x)
    best.x = torch.tensor([[2.1, 0.0, 2.0], [3.0, 1.0, 0.0], [1.0, 5.0, 0.0]])  # margins 0.1, 2, and crossed
    best.fooled[2] = True
    idx, nearest = _nearly_crossed(identity, x, y, best, below=0.1)  # clean margin 4: ratios 0.025 and 0.5
    assert idx.tolist() == [0] and nearest.tolist() == [2]
    idx, nearest = _nearly_crossed(identity, x, y, best, below=0.6)
    assert idx.tolist() == [0, 1] and nearest.tolist() == [2, 1]


def _attack(model, x, y, **rescue):
    counted = Passes()
    adv = attacks.apgd_targeted(counted.model(model), x, y, THREAT, steps=10, targets=1, seed=3, **rescue)
    with torch.no_grad():
        return model(adv).argmax(1) != y, counted.counts


def test_rescue_keeps_every_break_and_spends_gradient_steps_only_on_the_nearly_crossed(digits_model, digits_test):
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(128)))
    plain, plain_passes = _attack(digits_model, x, y)
    survivors = int((~plain).sum())
    # no point qualifies: not one gradient pass more, two forward passes a survivor to measure the margins
    none, none_passes = _attack(digits_model, x, y, rescue_restarts=2, rescue_below=-float("inf"))
    assert torch.equal(none, plain) and none_passes[0] == plain_passes[0]
    assert none_passes[1] == plain_passes[1] + 2 * survivors
    # some qualify: fewer gradient passes than restarting every survivor, at most 2 restarts x (10 steps + the
    # start) for each, and no break of the plain run lost
    some, some_passes = _attack(digits_model, x, y, rescue_restarts=2, rescue_below=0.5)
    _, all_passes = _attack(digits_model, x, y, rescue_restarts=2, rescue_below=float("inf"))
    assert not (plain & ~some).any()
    assert 0 < some_passes[0] - plain_passes[0] < all_passes[0] - plain_passes[0] <= survivors * 2 * 11
