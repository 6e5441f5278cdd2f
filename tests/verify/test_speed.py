import torch
from torch import nn

from deploy_robust.verify.speed import prepare_for_attack


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_both_layouts_compute_the_same_logits_and_freeze_the_weights():
    net = _net()
    x = torch.rand(4, 3, 8, 8)
    want = net.eval()(x)
    for layout in ("contiguous", "channels_last"):
        call, used = prepare_for_attack(net, x, layout)
        assert used == layout and torch.allclose(call(x), want, atol=1e-5)
    assert not any(p.requires_grad for p in net.parameters())


def test_auto_picks_one_of_the_two_layouts_and_models_without_convs_stay_contiguous():
    _, used = prepare_for_attack(_net(), torch.rand(8, 3, 8, 8), "auto")
    assert used in ("contiguous", "channels_last")
    assert prepare_for_attack(nn.Linear(4, 2), torch.rand(2, 4), "auto")[1] == "contiguous"
