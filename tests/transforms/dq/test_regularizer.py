import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.transforms.dq import lipschitz_penalty, orthogonality_penalty, spectral_norms


def _direct(w: torch.Tensor) -> torch.Tensor:
    """||W W^T - I||_F^2 written out element by element."""
    m = w.reshape(w.shape[0], -1)
    total = torch.zeros((), dtype=m.dtype)
    for i in range(m.shape[0]):
        for j in range(m.shape[0]):
            total = total + (torch.dot(m[i], m[j]) - (1.0 if i == j else 0.0)) ** 2
    return total


@pytest.mark.parametrize("shape", [(6, 3, 2, 2), (20, 2, 1, 1), (5, 9)])
def test_value_and_gradient_match_a_direct_computation(shape):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    value = orthogonality_penalty(w, form="rows")
    (grad,) = torch.autograd.grad(value, w)
    w2 = w.detach().clone().requires_grad_(True)
    direct = _direct(w2)
    (direct_grad,) = torch.autograd.grad(direct, w2)
    assert torch.allclose(value, direct) and torch.allclose(grad, direct_grad)
    # closed form of the gradient: 4 (W W^T - I) W
    m = w.detach().reshape(shape[0], -1)
    closed = 4 * (m @ m.T - torch.eye(shape[0], dtype=m.dtype)) @ m
    assert torch.allclose(grad.reshape(shape[0], -1), closed)


@pytest.mark.parametrize("shape", [(6, 3, 2, 2), (20, 2, 1, 1)])
def test_the_smaller_gram_has_the_same_gradient_and_differs_by_a_constant(shape):
    torch.manual_seed(1)
    w = torch.randn(*shape, dtype=torch.float64)
    values, grads = {}, {}
    for form in ("rows", "columns", "smaller"):
        var = w.clone().requires_grad_(True)
        values[form] = orthogonality_penalty(var, form=form)
        (grads[form],) = torch.autograd.grad(values[form], var)
    m, n = shape[0], int(np.prod(shape[1:]))
    assert torch.allclose(grads["rows"], grads["columns"]) and torch.allclose(grads["smaller"], grads["rows"])
    assert torch.isclose(values["columns"] - values["rows"], torch.tensor(float(n - m), dtype=torch.float64))
    assert torch.equal(values["smaller"], values["rows" if m <= n else "columns"])


def test_the_model_penalty_sums_layers_with_half_beta():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    expected = 0.5 * 0.1 * (orthogonality_penalty(model[0].weight) + orthogonality_penalty(model[3].weight))
    assert torch.allclose(lipschitz_penalty(model, 0.1), expected)


def test_orthonormal_rows_cost_nothing_and_have_spectral_norm_one():
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    layer = nn.Linear(12, 5, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(q[:5])
    assert float(orthogonality_penalty(layer.weight.detach())) < 1e-20
    assert spectral_norms(nn.Sequential(layer))["0"] == pytest.approx(1.0)
    with torch.no_grad():
        layer.weight.mul_(3)
    assert spectral_norms(nn.Sequential(layer))["0"] == pytest.approx(3.0)
