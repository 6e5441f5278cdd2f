import pytest
import torch

from deploy_robust.verify import attacks
from deploy_robust.verify.attacks.fab import _boundary_step, _norms
from deploy_robust.verify.threat import ThreatModel


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_boundary_step_is_the_least_norm_point_on_the_hyperplane_within_the_box(norm):
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(16, 20, generator=generator)
    w = torch.randn(16, 20, generator=generator)
    c = torch.randn(16, generator=generator) * 0.3
    delta = _boundary_step(p, w, c, norm)
    inside = ((p + delta) >= -1e-6).all() and ((p + delta) <= 1 + 1e-6).all()
    reached = ((w * delta).sum(1) - c).abs() < 1e-4
    assert inside and reached.float().mean() > 0.5
    # no smaller delta in the box reaches the hyperplane: random feasible points on it are never smaller
    size = _norms(delta, norm)
    for _ in range(200):
        other = torch.rand(16, 20, generator=generator) - p  # any point of the box ...
        scale = c / (w * other).sum(1)  # ... scaled onto the hyperplane
        candidate = other * scale[:, None]
        feasible = reached & (scale > 0) & ((p + candidate) >= 0).all(1) & ((p + candidate) <= 1).all(1)
        assert (_norms(candidate, norm)[feasible] >= size[feasible] - 1e-4).all()


def test_fab_finds_small_adversarials_and_its_targeted_version_matches_apgd_t(digits_model, digits_test):
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(100)))

    def acc(adv):
        with torch.no_grad():
            return (digits_model(adv).argmax(1) == y).float().mean().item()

    threat = ThreatModel("linf", 0.1)
    fab_t = acc(attacks.fab(digits_model, x, y, threat, steps=30, targets=9))
    apgd_t = acc(attacks.apgd_targeted(digits_model, x, y, threat, steps=30))
    assert fab_t < acc(x) - 0.3 and abs(fab_t - apgd_t) <= 0.05
    # unbounded by eps the minimum-norm attack breaks every point (FAB is not an eps-ball attack inside)
    assert acc(attacks.fab(digits_model, x, y, ThreatModel("linf", 1.0), steps=30)) == 0
