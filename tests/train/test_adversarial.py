import torch
import torch.nn.functional as F

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.seeding import seed_everything
from deploy_robust.train import crop_and_flip, fgsm_random_start, train_classifier


def test_fgsm_with_random_start_stays_in_the_ball_and_raises_the_loss():
    seed_everything(0)
    model = zoo.get("digits_cnn").build().eval()
    data = load_dataset("digits:train").take(64)
    x, y = torch.from_numpy(data.as_float()), torch.from_numpy(data.labels)
    x_adv = fgsm_random_start(0.1)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_crop_and_flip_moves_pixels_without_inventing_them():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = crop_and_flip(x, pad=2)
    assert out.shape == x.shape
    for image, source in zip(out, x):  # every output is a shifted (maybe flipped) window of the zero-padded source
        padded = F.pad(source, (2, 2, 2, 2))
        windows = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(image, w) or torch.equal(image, w.flip(2)) for w in windows)


def test_adversarial_training_runs_with_augmentation_and_is_repeatable():
    data = load_dataset("digits:train").take(256)
    runs = []
    for _ in range(2):
        seed_everything(3)
        model = zoo.get("digits_cnn").build()
        runs.append(train_classifier(model, data, epochs=2, seed=3, augment=True, perturb=fgsm_random_start(0.05)))
    assert runs[0] == runs[1] and runs[0][1] < runs[0][0]
