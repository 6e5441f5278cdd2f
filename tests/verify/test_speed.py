import torch
from torch import nn

from deploy_robust.verify.speed import native_bf16, prepare_for_attack


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_both_layouts_compute_the_same_logits_and_freeze_the_weights():
    net = _net()
    x = torch.rand(4, 3, 8, 8)
    want = net.eval()(x)
    for layout in ("contiguous", "channels_last"):
        call, used, precision = prepare_for_attack(net, x, layout)
        assert used == layout and precision == "fp32" and torch.allclose(call(x), want, atol=1e-5)
    assert not any(p.requires_grad for p in net.parameters())


def test_auto_picks_one_of_the_two_layouts_and_models_without_convs_stay_contiguous():
    _, used, _ = prepare_for_attack(_net(), torch.rand(8, 3, 8, 8), "auto")
    assert used in ("contiguous", "channels_last")
    assert prepare_for_attack(nn.Linear(4, 2), torch.rand(2, 4), "auto")[1] == "contiguous"


def test_bf16_gradients_are_float32_logits_near_the_fp32_ones_with_a_usable_gradient():
    net = _net()
    x = torch.rand(4, 3, 8, 8)
    want = net.eval()(x)
    for layout in ("contiguous", "channels_last"):
        call, used, precision = prepare_for_attack(net, x, layout, "bf16")
        assert (used, precision) == (layout, "bf16")
        x_var = x.clone().requires_grad_(True)
        logits = call(x_var)
        assert logits.dtype == torch.float32 and torch.allclose(logits, want, atol=0.05, rtol=0.05)
        (grad,) = torch.autograd.grad(logits[:, 0].sum(), x_var)
        assert grad.dtype == torch.float32 and grad.abs().sum() > 0


def test_auto_precision_offers_bf16_only_where_the_cpu_runs_it_natively():
    _, _, precision = prepare_for_attack(_net(), torch.rand(8, 3, 8, 8), "auto", "auto")
    assert precision == "fp32" or (precision == "bf16" and native_bf16())
