import numpy as np
import pytest
import torch

from deploy_robust.verify import attacks


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


def _counted(scores):
    calls = []

    def run(batch):
        calls.append(len(batch))
        return scores(batch)

    return run, calls


def test_square_escalates_only_the_points_whose_margin_it_was_closing(scores, digits_test):
    from deploy_robust.verify.threat import ThreatModel

    x, y = next(digits_test.batches(40))
    right = scores(x).argmax(1) == y  # Square runs on the points the engine gets right
    x, y = x[right], y[right]
    square, threat = attacks.BLACK_BOX["square"], ThreatModel("linf", 0.15)
    # the first budget alone (same seed: the escalated run starts with exactly this)
    first = square(scores, x, y, threat, queries=20)
    margin, clean = attacks.margins(scores(first), y), attacks.margins(scores(x), y)
    closing = (margin > 0) & (margin < attacks.ESCALATE_BELOW * clean)
    assert 0 < closing.sum() < (margin > 0).sum()  # this radius has both kinds of survivor
    counted, calls = _counted(scores)
    adv = square(counted, x, y, threat, queries=20, escalate=200)
    # clean margins, 20 queries, the check after them; then only the closing points, for up to 200 queries
    assert calls[0] == calls[1] == len(x) and calls[22] == closing.sum() and max(calls[22:]) == closing.sum()
    assert 22 < len(calls) <= 22 + 200
    assert (scores(adv).argmax(1) != y)[~closing].tolist() == (margin <= 0)[~closing].tolist()
    # a radius too small to move any margin much: no second budget
    small, small_calls = _counted(scores)
    square(small, x, y, ThreatModel("linf", 1e-4), queries=20, escalate=200)
    assert len(small_calls) == 1 + 20 + 1
