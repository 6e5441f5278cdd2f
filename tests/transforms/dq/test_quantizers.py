import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.transforms.dq.model import DQConfig, fold_batchnorms, prepare_structure
from deploy_robust.transforms.dq.quantizers import (
    ActivationQuantizer,
    InputQuantizer,
    mse_bound,
    quantize_weight,
    weight_levels,
)


def test_weights_land_on_a_symmetric_per_channel_grid_with_straight_through_gradients():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    q = quantize_weight(w, weight_levels(4))
    for channel, original in zip(q.detach(), w.detach()):
        scale = channel.abs().max() / 7  # the largest weight sits at +-7: the exporter re-derives the scale
        steps = channel / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4) and scale <= original.abs().max() / 7 + 1e-7
    (grad,) = torch.autograd.grad(q.sum(), w)
    assert torch.equal(grad, torch.ones_like(w))
    assert weight_levels(8) == 63 and weight_levels(2) == 1


def test_low_bit_scales_clip_to_cut_the_rounding_error():
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    absmax_rule = torch.clamp(torch.round(w / (w.abs().amax(1, keepdim=True))), -1, 1) * w.abs().amax(1, keepdim=True)
    ternary = quantize_weight(w, weight_levels(2))
    assert ((ternary - w) ** 2).sum() < 0.7 * ((absmax_rule - w) ** 2).sum()
    assert (ternary != 0).float().mean() > 2 * (absmax_rule != 0).float().mean()
    eight = quantize_weight(w, weight_levels(8))
    assert torch.allclose(eight.abs().amax(1), w.abs().amax(1))  # 8 bits keep the max


def test_per_tensor_weights_share_one_scale():
    w = torch.tensor([[1.0, -0.5], [0.1, 0.05]])
    q = quantize_weight(w, 7, per_channel=False)
    scale = q.abs().max() / 7
    assert torch.allclose(q / scale, (q / scale).round(), atol=1e-5)
    assert float(q[1, 1]) == 0.0  # 0.05 is under half a step of the shared scale


def test_activations_are_bounded_on_a_k_bit_grid_and_pass_no_gradient_outside():
    quantizer = ActivationQuantizer(3)
    quantizer.bound.fill_(1.4)
    x = torch.linspace(-1, 2, 301, requires_grad=True)
    y = quantizer(x)
    levels = y.detach() / (1.4 / 7)
    assert torch.allclose(levels, levels.round(), atol=1e-5) and levels.min() == 0 and levels.max().round() == 7
    (grad,) = torch.autograd.grad(y.sum(), x)
    inside = (x > 0) & (x < 1.4)
    assert torch.all(grad[inside] == 1) and torch.all(grad[(x < 0) | (x > 1.4)] == 0)


def test_the_input_quantizer_is_the_exporters_uint8_grid():
    quantizer = InputQuantizer(0.0, 1.0)
    x = torch.rand(1000)
    assert float(quantizer.scale) == torch.tensor(1 / 255).item() and float(quantizer.zero_point) == 0
    assert torch.allclose(quantizer(x), (x * 255).round() / 255, atol=1e-6)


def test_the_mse_bound_clips_a_heavy_tail_at_low_bits():
    torch.manual_seed(0)
    samples = torch.cat([torch.rand(100_000), torch.tensor([50.0])])
    assert mse_bound(samples, 2) < 5 and mse_bound(samples, 8) > mse_bound(samples, 2)


def test_structure_replaces_every_relu_and_quantizes_edges_at_8_bits():
    model = zoo.get("resnet2b").build()  # relus called as functions, a residual Add
    dq = prepare_structure(model, DQConfig(4, 3, (-2.0, 2.0)))
    acts = [m for m in dq.modules() if isinstance(m, ActivationQuantizer)]
    assert len(acts) == 6 and all(a.bits == 3 for a in acts)
    bits = {name: m.bits for name, m in dq.named_modules() if hasattr(m, "quantized_weight")}
    assert bits["conv1"] == 8 and bits["linear2"] == 8 and bits["layer1.0.conv2"] == 4
    assert "relu" not in dq.code
    # deterministic: a second build has the same state_dict keys, so saved weights load
    again = prepare_structure(zoo.get("resnet2b").build(), DQConfig(4, 3, (-2.0, 2.0)))
    assert list(again.state_dict()) == list(dq.state_dict())


def test_batchnorm_folds_into_the_conv_before_quantization():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(4, 3, 6, 6))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.rand(5, 3, 6, 6)
    with torch.no_grad():
        before = model(x)
        folded = fold_batchnorms(model)
        after = model(x)
    assert folded == {"0": "1"} and isinstance(model[1], nn.Identity)
    assert torch.allclose(before, after, atol=1e-5)


def test_the_cached_weight_scale_follows_optimizer_steps():
    from deploy_robust.transforms.dq.quantizers import quantize_layer

    torch.manual_seed(0)
    layer = quantize_layer(nn.Conv2d(2, 3, 3), 4)
    before = layer.quantized_weight().detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.quantized_weight().pow(2).sum().backward()
    optimizer.step()
    after = layer.quantized_weight().detach()
    assert not torch.equal(before, after)
    assert torch.equal(after, quantize_weight(layer.weight.detach(), weight_levels(4)))
