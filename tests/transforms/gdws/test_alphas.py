"""Noise-gain channel weights: the formula, dead channels, and a cache tied to the weights."""

import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.transforms.gdws.alphas import AlphaSettings, estimate_alphas, load_alphas, save_alphas, weights_hash


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 5),
    )
    return model.eval()


def _data(n: int = 6) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(rng.random((n, 1, 6, 6), dtype=np.float32), rng.integers(0, 5, n), "random")


def test_alpha_matches_a_direct_per_class_computation():
    model = _model()
    conv = model[2]
    data = _data(3)
    alphas = estimate_alphas(model, {"2": conv}, data, AlphaSettings(eps=0.0, steps=0, n=3))["2"]
    expected = np.zeros(4)
    for image in torch.from_numpy(data.as_float()):
        conv.weight.requires_grad_(True)
        logits = model(image[None])[0]
        top = int(logits.argmax())
        for j in range(5):
            if j == top:
                continue
            margin = logits[top] - logits[j]
            (grad,) = torch.autograd.grad(margin, conv.weight, retain_graph=True)
            expected += (grad.double() ** 2).sum(dim=(0, 2, 3)).numpy() / (2 * margin.item() ** 2 * 6 * 9)
    conv.weight.requires_grad_(False)
    assert np.allclose(alphas, expected / 3, rtol=1e-6)
    assert not conv.weight.requires_grad  # the model's flags are restored


def test_batched_gains_match_the_direct_computation_on_strided_padded_and_same_padded_convs():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),  # 6x6 -> 3x3
        nn.ReLU(),
        nn.Conv2d(6, 5, (3, 2), padding="same", dilation=(1, 2)),  # asymmetric padding
        nn.ReLU(),
        nn.Conv2d(5, 8, 2),  # 3x3 -> 2x2: few output positions, summed through their Gram matrix
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 5),
    ).eval()
    convs = {"2": model[2], "4": model[4], "6": model[6]}
    data = _data(20)  # more than one batch of 16
    alphas = estimate_alphas(model, convs, data, AlphaSettings(eps=0.0, steps=0, n=20))
    for name, conv in convs.items():
        expected = np.zeros(conv.in_channels)
        m, _, kh, kw = conv.weight.shape
        conv.weight.requires_grad_(True)
        for image in torch.from_numpy(data.as_float()):
            logits = model(image[None])[0]
            top = int(logits.argmax())
            for j in (j for j in range(5) if j != top):
                margin = logits[top] - logits[j]
                (grad,) = torch.autograd.grad(margin, conv.weight, retain_graph=True)
                expected += (grad.double() ** 2).sum(dim=(0, 2, 3)).numpy() / (2 * margin.item() ** 2 * m * kh * kw)
        conv.weight.requires_grad_(False)
        assert np.allclose(alphas[name], expected / 20, rtol=1e-5), name


def test_a_dead_input_channel_gets_zero_weight_and_pgd_points_are_used():
    model = _model(1)
    with torch.no_grad():  # channel 2 of the first conv never fires: conv 2 cannot be sensitive to it
        model[0].weight[2] = 0
        model[0].bias[2] = -1
    alphas = estimate_alphas(model, {"2": model[2]}, _data(), AlphaSettings(eps=0.1, steps=3, n=6))["2"]
    assert alphas[2] == 0 and np.all(alphas[[0, 1, 3]] > 0)
    clean = estimate_alphas(model, {"2": model[2]}, _data(), AlphaSettings(eps=0.0, steps=0, n=6))["2"]
    assert not np.allclose(alphas, clean)


def test_cache_round_trip_and_refusal_on_other_weights(tmp_path):
    model = _model()
    convs = {"2": model[2]}
    alphas = {"2": np.array([0.5, 1.0, 2.0, 0.0])}
    path = tmp_path / "alphas.json"
    save_alphas(path, alphas, AlphaSettings(eps=0.1), weights_hash(convs), "random")
    loaded, info = load_alphas(path, weights_hash(convs))
    assert np.array_equal(loaded["2"], alphas["2"]) and info["eps"] == 0.1 and info["data"] == "random"
    with pytest.raises(UserError, match="other weights"):
        load_alphas(path, weights_hash({"2": _model(5)[2]}))
    path.write_text("{}")
    with pytest.raises(UserError, match="not a GDWS alphas file"):
        load_alphas(path, weights_hash(convs))


def test_too_few_images_is_a_user_error():
    with pytest.raises(UserError, match="images"):
        estimate_alphas(_model(), {"2": _model()[2]}, _data(2), AlphaSettings(n=10))
