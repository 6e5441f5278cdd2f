import torch

from deploy_robust.verify.attacks.losses import LOSSES, dlr_loss, margin_loss


def test_the_margin_is_the_best_other_logit_minus_the_true_one_and_dlr_scales_it():
    logits = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    margin = margin_loss(logits, y)
    assert torch.allclose(margin, torch.tensor([1.0 - 3.0, 2.0 - 0.0]))  # ascending it crosses the boundary
    # DLR: the same margin divided by the spread of the top logits (z_pi1 - z_pi3), so it is scale-free
    assert torch.allclose(dlr_loss(logits * 10, y), dlr_loss(logits, y), atol=1e-5)
    assert (torch.sign(dlr_loss(logits, y)) == torch.sign(margin)).all()
    assert set(LOSSES) == {"ce", "margin", "dlr"}
