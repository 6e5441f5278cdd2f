import numpy as np
import pytest
import torch

from deploy_robust.verify import attacks
from deploy_robust.verify.threat import ThreatModel, parse_eps


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("0.3") == 0.3


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_candidates_stay_inside_the_threat_model(digits_model, digits_test, norm, eps):
    threat = ThreatModel(norm, eps)
    x, y = (torch.from_numpy(a) for a in next(digits_test.batches(64)))
    for adv in (attacks.fgsm(digits_model, x, y, threat), attacks.pgd(digits_model, x, y, threat, steps=10),
                attacks.apgd(digits_model, x, y, threat, steps=20, loss="dlr"),
                attacks.fab(digits_model, x, y, threat, steps=10, targets=2),
                attacks.fab(digits_model, x, y, threat, steps=5, restarts=2)):
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


@pytest.fixture
def scores(digits_model):
    """The model seen as a black box: numpy images in, numpy logits out."""
    def run(batch):
        with torch.no_grad():
            return digits_model(torch.from_numpy(batch)).numpy()
    return run


def test_square_attacks_with_scores_only(scores, digits_test):
    x, y = next(digits_test.batches(100))
    adv, queries = attacks.square_linf(scores, x, y, 0.2, queries=300)
    assert np.abs(adv - x).max() <= 0.2 + 1e-6 and queries <= 300
    assert (scores(adv).argmax(1) == y).mean() < (scores(x).argmax(1) == y).mean() - 0.2


def test_square_l2_stays_in_the_ball_and_finds_adversarials(scores, digits_test):
    x, y = next(digits_test.batches(100))
    adv, queries = attacks.square_l2(scores, x, y, 1.5, queries=300)
    norms = np.sqrt(((adv - x) ** 2).reshape(len(x), -1).sum(1))
    assert norms.max() <= 1.5 + 1e-4 and adv.min() >= 0 and adv.max() <= 1 and queries <= 300
    assert (scores(adv).argmax(1) == y).mean() < (scores(x).argmax(1) == y).mean() - 0.2


def test_averaged_scores_average_probabilities_over_draws():
    draws = [np.array([[2.0, 0.0]]), np.array([[0.0, 3.0]])]
    calls = iter(draws * 3)
    got = attacks.averaged_scores(lambda x: next(calls), 2)(np.zeros((1, 1)))
    probs = [np.exp(d) / np.exp(d).sum() for d in draws]
    np.testing.assert_allclose(np.exp(got), (probs[0] + probs[1]) / 2, rtol=1e-9)


def test_apgd_checkpoints_follow_the_paper():
    points = attacks._apgd_checkpoints(100)
    assert points[:3] == [22, 41, 57] and points[-1] <= 100  # p = 0, .22, .41, .57, ... (Croce and Hein 2020)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_boundary_step_is_the_least_norm_point_on_the_hyperplane_within_the_box(norm):
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(16, 20, generator=generator)
    w = torch.randn(16, 20, generator=generator)
    c = torch.randn(16, generator=generator) * 0.3
    delta = attacks._boundary_step(p, w, c, norm)
    inside = ((p + delta) >= -1e-6).all() and ((p + delta) <= 1 + 1e-6).all()
    reached = ((w * delta).sum(1) - c).abs() < 1e-4
    assert inside and reached.float().mean() > 0.5
    # no smaller delta in the box reaches the hyperplane: random feasible points on it are never smaller
    size = attacks._norms(delta, norm)
    for _ in range(200):
        other = torch.rand(16, 20, generator=generator) - p                 # any point of the box ...
        scale = c / (w * other).sum(1)                                       # ... scaled onto the hyperplane
        candidate = other * scale[:, None]
        feasible = reached & (scale > 0) & ((p + candidate) >= 0).all(1) & ((p + candidate) <= 1).all(1)
        assert (attacks._norms(candidate, norm)[feasible] >= size[feasible] - 1e-4).all()


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
