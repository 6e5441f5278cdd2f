"""Early exit inside an attack: a broken point stops costing steps, and no break the full attack finds is lost."""

import numpy as np
import pytest
import torch

from deploy_robust.verify import attacks
from deploy_robust.verify.cost import Passes
from deploy_robust.verify.threat import ThreatModel

THREAT = ThreatModel("linf", 0.1)


def _broken(model, adv, y):
    with torch.no_grad():
        return model(adv).argmax(1) != y


def _run(name, model, x, y, **extra):
    counted = Passes()
    calls = {
        "pgd": lambda m: attacks.pgd(m, x, y, THREAT, steps=20, seed=3, **extra),
        "apgd": lambda m: attacks.apgd(m, x, y, THREAT, steps=30, seed=3, **extra),
        "apgd-t": lambda m: attacks.apgd_targeted(m, x, y, THREAT, steps=20, targets=3, seed=3, **extra),
    }
    adv = calls[name](counted.model(model))
    return adv, int(counted.counts[0])


@pytest.mark.parametrize("name", ["pgd", "apgd", "apgd-t"])
def test_early_exit_keeps_every_break_of_the_full_attack_for_fewer_gradient_passes(digits_model, digits_test, name):
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(128)))
    full, full_passes = _run(name, digits_model, x, y, early_exit=False)
    early, early_passes = _run(name, digits_model, x, y)
    lost = _broken(digits_model, full, y) & ~_broken(digits_model, early, y)
    assert not lost.any(), f"{int(lost.sum())} breaks of the full attack lost"
    assert _broken(digits_model, early, y).any() and early_passes < full_passes


def test_engine_confirmation_attacks_on_where_the_engine_disagrees(digits_model, digits_test):
    """A confirm that rejects every candidate (an engine that disagrees with the twin) retires nothing: the attack
    costs what the full attack costs, and its candidates are still the attacked model's best."""
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(64)))
    asked = []

    def never(rows, candidates):
        asked.append(len(rows))
        return torch.zeros(len(rows), dtype=torch.bool)

    _, full_passes = _run("apgd", digits_model, x, y, early_exit=False)
    adv, passes = _run("apgd", digits_model, x, y, confirm=never)
    assert sum(asked) > 0 and passes == full_passes
    confirmed = []

    def always(rows, candidates):
        confirmed.append(rows.clone())
        return torch.ones(len(rows), dtype=torch.bool)

    adv, passes = _run("apgd", digits_model, x, y, confirm=always)
    rows = torch.cat(confirmed)
    assert passes < full_passes and len(set(rows.tolist())) == len(rows)  # each point confirmed once, then retired
    assert _broken(digits_model, adv[rows], y[rows]).all()


def test_malt_ranks_the_nearest_boundary_first_and_never_the_true_class(digits_model, digits_test):
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(64)))
    targets = attacks.malt_targets(digits_model, x, y, 3, "linf")
    assert len(targets) == 3 and all((t != y).all() for t in targets)
    assert len({tuple(t.tolist()) for t in targets}) == 3
    # the first target is the class a linear step reaches soonest: a targeted attack toward it breaks at least as
    # many points as one toward the third
    first, third = (
        attacks.apgd(digits_model, x, y, THREAT, steps=20, loss=attacks.dlr_targeted_loss, target=t, seed=1)
        for t in (targets[0], targets[2])
    )
    assert _broken(digits_model, first, y).sum() >= _broken(digits_model, third, y).sum()
    assert np.isfinite(targets[0].numpy()).all()
