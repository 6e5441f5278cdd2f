import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.defenses.sap import StochasticActivationPruning, add_sap, keep_probability


def test_keep_probability_is_accurate_where_one_minus_p_rounds_to_one():
    p = torch.tensor([0.0, 1e-9, 1e-6, 1e-3, 0.1, 0.5, 1.0], dtype=torch.float32)
    want = -torch.expm1(100 * torch.log1p(-p.double()))
    got = keep_probability(p, 100).double()
    assert torch.allclose(got[1:], want[1:], rtol=1e-5)
    assert got[0] > 0  # clamped: never a division by zero


def test_sap_is_unbiased():
    """Monte Carlo: E[SAP(h)] = h within a few standard errors, per unit."""
    torch.manual_seed(0)
    h = torch.relu(torch.randn(1, 64)) * torch.rand(1, 64) * 3
    sap = StochasticActivationPruning(fraction=0.5)
    runs = torch.cat([sap(h) for _ in range(20000)])
    mean, stderr = runs.mean(0), runs.std(0) / np.sqrt(len(runs))
    assert torch.all((mean - h[0]).abs() <= 5 * stderr + 1e-6)
    assert (runs == 0).float().mean() > 0.2  # it does prune


def test_sap_keeps_drawn_units_and_passes_zero_layers_through():
    sap = StochasticActivationPruning(fraction=0.25)
    h = torch.tensor([[0.0, 0.0, 5.0, 1.0, 0.0, 2.0, 0.0, 0.0]])
    out = sap(h)
    assert torch.all((out == 0) | (out >= h))  # kept units are scaled up, the rest dropped
    assert torch.all(out[h == 0] == 0)  # zero units are never drawn
    zeros = torch.zeros(2, 8)
    assert torch.equal(sap(zeros), zeros)


def test_seeded_mode_repeats_itself_and_draws_like_random_mode():
    torch.manual_seed(1)
    h = torch.relu(torch.randn(4, 32))
    seeded = StochasticActivationPruning(fraction=0.5, seed=3, units=32)
    assert torch.equal(seeded(h), seeded(h))
    random_mode = StochasticActivationPruning(fraction=0.5)
    kept_random = torch.stack([(random_mode(h) != 0).float() for _ in range(4000)]).mean(0)
    kept_seeded = torch.stack(
        [(StochasticActivationPruning(0.5, seed=s, units=32)(h) != 0).float() for s in range(400)]
    ).mean(0)
    assert torch.allclose(kept_random, kept_seeded, atol=0.08)
    assert torch.allclose(kept_random, keep_probability(h / h.sum(1, keepdim=True), 16), atol=0.05)


def test_add_sap_wraps_the_activations_of_a_copy():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    defended, layers = add_sap(model, torch.rand(2, 1, 4, 4), fraction=0.5)
    assert layers == [{"layer": "2", "units": 8, "draws": 4}]
    assert isinstance(model[2], nn.ReLU)  # the original is untouched
    out = torch.stack([defended(torch.rand(1, 1, 4, 4)) for _ in range(3)])
    assert out.shape == (3, 1, 3)
    from deploy_robust.errors import UserError

    with pytest.raises(UserError, match="no layer named nope"):
        add_sap(model, torch.rand(1, 1, 4, 4), layers=["nope"])
