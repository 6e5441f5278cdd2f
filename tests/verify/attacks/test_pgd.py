import pytest
import torch

from deploy_robust.verify import attacks
from deploy_robust.verify.threat import ThreatModel


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_candidates_stay_inside_the_threat_model(digits_model, digits_test, norm, eps):
    threat = ThreatModel(norm, eps)
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(64)))
    for adv in (
        attacks.fgsm(digits_model, x, y, threat),
        attacks.pgd(digits_model, x, y, threat, steps=10),
        attacks.apgd(digits_model, x, y, threat, steps=20, loss="dlr"),
        attacks.fab(digits_model, x, y, threat, steps=10, targets=2),
        attacks.fab(digits_model, x, y, threat, steps=5, restarts=2),
    ):
        delta = (adv - x).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert (size <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1


def test_iterative_attacks_beat_fgsm_and_reach_zero_at_large_eps(digits_model, digits_test):
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(200)))

    def acc(adv):
        with torch.no_grad():
            return (digits_model(adv).argmax(1) == y).float().mean().item()

    threat = ThreatModel("linf", 0.1)
    clean = acc(x)
    fgsm = acc(attacks.fgsm(digits_model, x, y, threat))
    pgd = acc(attacks.pgd(digits_model, x, y, threat, steps=20))
    apgd = acc(attacks.apgd(digits_model, x, y, threat, steps=50))
    assert clean > 0.9 and pgd <= fgsm and apgd <= fgsm and pgd < clean - 0.2
    assert acc(attacks.pgd(digits_model, x, y, ThreatModel("linf", 0.5), steps=20)) < 0.02
