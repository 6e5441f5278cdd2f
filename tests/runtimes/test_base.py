import numpy as np

from deploy_robust.runtimes.base import Runner


class _FixedBatch(Runner):
    fixed_batch = 4

    def __init__(self):
        self.seen = []

    def _infer_all(self, x):
        self.seen.append(len(x))
        return [x.reshape(len(x), -1)[:, :2] * 2]


def test_fixed_batch_runner_splits_and_pads():
    runner = _FixedBatch()
    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2, 1, 1)
    out = runner.infer(x)
    assert runner.seen == [4, 4, 4] and out.shape == (10, 2)
    np.testing.assert_array_equal(out, x.reshape(10, 2) * 2)


class _TwoOutputs(Runner):
    fixed_batch = 4

    def _infer_all(self, x):
        return [x.reshape(len(x), -1)[:, :2], x.reshape(len(x), -1).sum(1)]


def test_every_output_comes_back_split_and_padded_like_the_logits():
    x = np.random.default_rng(1).random((10, 1, 2, 2), dtype=np.float32)
    logits, score = _TwoOutputs().infer_outputs(x)
    assert logits.shape == (10, 2) and score.shape == (10,)
    assert np.allclose(score, x.reshape(10, -1).sum(1)) and np.array_equal(_TwoOutputs().infer(x), logits)


class _Counting(Runner):
    def __init__(self):
        self.events = []

    def activate(self):
        self.events.append("activate")

    def deactivate(self):
        self.events.append("deactivate")

    def _infer_all(self, x):
        return [x.astype(np.float64)]


def test_a_runner_is_a_context_manager_and_returns_float32_logits():
    runner = _Counting()
    with runner as active:
        out = active.infer(np.ones((2, 1, 1, 1), np.float64))
    assert runner.events == ["activate", "deactivate"] and out.dtype == np.float32
