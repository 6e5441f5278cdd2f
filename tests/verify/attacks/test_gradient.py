import torch

from deploy_robust.verify.attacks.gradient import Best, gradient


def test_eot_averages_the_gradient_over_draws():
    draws = iter([torch.tensor(1.0), torch.tensor(3.0)])

    def noisy(x):  # a stochastic model: a fresh scale per forward pass
        return torch.stack([x.sum(1) * next(draws), torch.zeros(len(x))], 1)

    x, y = torch.ones(1, 4), torch.tensor([1])
    grad, loss, _ = gradient(noisy, x, y, "margin", eot=2)
    # margin = z_0 - z_1 = scale * sum(x): its gradient is the scale, averaged over the draws (1 and 3)
    assert torch.allclose(grad, torch.full((1, 4), 2.0)) and torch.allclose(loss, torch.tensor([8.0]))


def test_the_best_candidate_keeps_the_first_misclassifying_point_else_the_highest_loss():
    best = Best(torch.zeros(2, 1))
    y = torch.tensor([0, 0])
    best.update(torch.tensor([[1.0], [1.0]]), torch.tensor([0.5, 0.5]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), y)
    best.update(torch.tensor([[2.0], [2.0]]), torch.tensor([0.9, 0.9]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]), y)
    assert best.x.flatten().tolist() == [1.0, 2.0]  # point 0 fooled at step 1 (kept); point 1: higher loss
    assert best.fooled.tolist() == [True, False] and best.unbroken().tolist() == [1]
