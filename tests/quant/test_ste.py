import torch

from deploy_robust.quant.ste import ste_round, straight_through


def test_forward_is_the_quantized_value_and_the_gradient_is_the_identity():
    x = torch.tensor([0.2, 0.6, 1.5, -2.7], requires_grad=True)
    y = ste_round(x)
    assert torch.equal(y, torch.tensor([0.0, 1.0, 2.0, -3.0]))
    (y * torch.arange(4.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(4.0))


def test_any_quantizer_passes_gradients_straight_through():
    x = torch.tensor([0.3, 0.7], requires_grad=True)
    y = straight_through(x, torch.sign(x - 0.5))
    assert torch.allclose(y, torch.tensor([-1.0, 1.0]))  # x + (q - x): q up to one float rounding
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(2))
