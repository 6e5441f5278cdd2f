import numpy as np
import pytest

from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.runtimes.base import Runner


class _Echo(Runner):
    """Logits = the first `k` pixels: a runner whose answers the test knows."""

    def __init__(self, k):
        self.k = k
        self.batches = []

    def _infer_all(self, x):
        self.batches.append(len(x))
        return [x.reshape(len(x), -1)[:, : self.k]]


def _dataset(n=10, classes=3):
    x = np.zeros((n, 1, 1, 4), np.uint8)
    y = np.arange(n) % classes
    x[np.arange(n), 0, 0, y] = 255  # the pixel at the label's index is brightest
    x[::4, 0, 0, 0] = 255  # ...except every fourth image also lights pixel 0
    x[::4, 0, 0, 1:] = 0
    return Dataset(x, y, "synthetic", 255.0)


def test_accuracy_counts_and_batches():
    ds = _dataset()
    runner = _Echo(3)
    result = evaluate(runner, ds, batch_size=4)
    expected = (np.arange(10) % 3 == 0) | (np.arange(10) % 4 != 0)
    assert result.correct == int(expected.sum()) and result.n == 10
    assert runner.batches == [4, 4, 2]
    doc = result.to_json()
    assert doc["accuracy_ci95"][0] < doc["accuracy"] < doc["accuracy_ci95"][1]


def test_too_few_logits_for_the_labels():
    with pytest.raises(UserError, match="only 2 classes"):
        evaluate(_Echo(2), _dataset())


def test_compare_logits():
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    b = np.array([[0.9, 0.1], [1.0, 0.5]], np.float32)
    agreement = compare_logits(a, b)
    assert agreement.top1_agreement == 0.5
    assert agreement.max_abs_diff == pytest.approx(1.0)
    assert agreement.mean_abs_diff == pytest.approx((0.1 + 0.1 + 1.0 + 0.5) / 4)
