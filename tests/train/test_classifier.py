import torch

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier


def test_training_learns_digits_and_is_repeatable():
    train = load_dataset("digits:train").take(600)
    runs = []
    for _ in range(2):
        seed_everything(7)
        model = zoo.get("digits_cnn").build()
        losses = train_classifier(model, train, epochs=3, seed=7)
        runs.append((losses, model.state_dict()))
    assert runs[0][0][-1] < runs[0][0][0]
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
