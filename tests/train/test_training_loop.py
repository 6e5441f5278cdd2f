"""The shared training loop: PGD adversarial training, resuming, and a regularizer term."""

import pytest
import torch
import torch.nn.functional as F

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.train import pgd_training, train_classifier


def _digits(n=256):
    return load_dataset("digits:train").take(n)


def test_pgd_training_examples_stay_in_the_ball_and_beat_fgsm_loss():
    torch.manual_seed(0)
    model = zoo.get("digits_cnn").build().eval()
    data = _digits(64)
    x, y = torch.from_numpy(data.as_float()), torch.from_numpy(data.labels)
    x_pgd = pgd_training(0.1, steps=5)(model, x, y)
    assert (x_pgd - x).abs().max() <= 0.1 + 1e-6 and x_pgd.min() >= 0 and x_pgd.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_pgd), y) > F.cross_entropy(model(x), y)


def test_a_resumed_run_reproduces_the_uninterrupted_one(tmp_path):
    data = _digits()
    kwargs = dict(epochs=3, batch_size=32, seed=5, augment=True, perturb=pgd_training(0.05, steps=2))
    torch.manual_seed(1)
    full = zoo.get("digits_cnn").build()
    full_losses = train_classifier(full, data, **kwargs)

    class Stop(Exception):
        pass

    def interrupt(epoch, _loss):
        if epoch == 1:
            raise Stop

    ckpt = tmp_path / "run.ckpt"
    torch.manual_seed(1)
    first = zoo.get("digits_cnn").build()
    with pytest.raises(Stop):
        train_classifier(first, data, checkpoint=ckpt, on_epoch=interrupt, **kwargs)
    resumed = zoo.get("digits_cnn").build()  # fresh weights: everything must come from the checkpoint
    losses = train_classifier(resumed, data, checkpoint=ckpt, resume=True, **kwargs)
    assert losses == full_losses
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_the_penalty_term_is_minimized_with_the_loss():
    data = _digits(128)
    weights = []
    for scale in (0.0, 10.0):
        torch.manual_seed(0)
        model = zoo.get("digits_cnn").build()
        train_classifier(
            model,
            data,
            epochs=10,
            lr=1e-2,
            seed=0,
            penalty=lambda m, s=scale: s * sum(p.pow(2).sum() for p in m.parameters()),
        )
        weights.append(sum(float(p.detach().pow(2).sum()) for p in model.parameters()))
    assert weights[1] < 0.8 * weights[0]
