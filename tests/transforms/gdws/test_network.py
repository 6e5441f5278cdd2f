"""Whole-network GDWS: which layers, one beta or a MAC budget, BN folding, exactness at full rank."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.transforms.gdws import GDWSConv2d, apply_gdws, plan_gdws
from tests.conftest import make_tiny


class Mixed(nn.Module):
    """First conv, a KxK conv with BN, a 1x1 conv, a grouped conv, and a reused activation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.point = nn.Conv2d(32, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.bn(self.body(torch.relu(self.stem(x)))))
        h = self.grouped(torch.relu(self.point(h)))
        return self.head(h.mean((2, 3)))


def _mixed(seed: int = 0) -> Mixed:
    torch.manual_seed(seed)
    model = Mixed()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_layer_selection_and_reasons():
    plan = plan_gdws(_mixed(), (3, 16, 16), beta=0.0, channel_multiple=1)
    reasons = {layer.name: layer.reason for layer in plan.layers}
    assert reasons["stem"].startswith("skipped: first")
    assert reasons["point"].startswith("skipped: 1x1")
    assert reasons["grouped"].startswith("skipped: grouped")
    # beta 0 keeps every component: full rank costs more than the conv, so it stays as it is
    assert reasons["body"].startswith("kept")
    named = plan_gdws(_mixed(), (3, 16, 16), beta=0.0, skip=["bo*"], include_first=True)
    assert named.layers[1].reason.startswith("skipped: named")


def test_full_rank_rewrite_of_every_conv_is_exact_and_folds_batchnorm():
    model = _mixed()
    x = torch.rand(3, 3, 16, 16)
    expected = model(x)
    plan = plan_gdws(model, (3, 16, 16), beta=0.0, include_first=True, channel_multiple=1)
    # force full rank wherever GDWS would otherwise keep the conv, to test exactness of the rewrite itself
    for layer in plan.layers:
        if layer.reason.startswith("kept"):
            layer.allocation = [min(layer.out_channels, layer.kernel[0] * layer.kernel[1])] * layer.in_channels
            layer.reason = "rewritten"
    rewritten = apply_gdws(copy.deepcopy(model), plan)
    assert isinstance(rewritten.body, GDWSConv2d) and isinstance(rewritten.stem, GDWSConv2d)
    assert isinstance(rewritten.bn, nn.Identity)
    assert plan.layers[1].folded_bn == "bn"
    assert torch.allclose(rewritten(x), expected, atol=1e-5, rtol=1e-4)


def test_per_layer_budget_holds_in_every_layer():
    model = zoo.get("resnet18").build().eval()
    plan = plan_gdws(model, (3, 32, 32), budget=0.25)
    assert plan.allocation == "per-layer" and len(plan.replaced) == 16
    for layer in plan.replaced:
        assert layer.macs <= 0.25 * layer.original_macs
        widest = int(0.25 * layer.original_macs // ((9 + layer.out_channels) * layer.output_pixels))
        assert layer.width == widest or (layer.width % 16 == 0 and 8 * (widest - layer.width) <= widest)
    assert plan.to_json()["rewritable_macs"]["ratio"] >= 4.0
    assert plan.beta == max(layer.error for layer in plan.replaced)


def test_global_budget_is_met_with_the_smallest_common_beta():
    model = zoo.get("resnet18").build().eval()
    plan = plan_gdws(model, (3, 32, 32), budget=0.25, allocation="global")
    doc = plan.to_json()
    assert doc["rewritable_macs"]["ratio"] >= 4.0
    assert doc["model_macs"]["ratio"] > 3.5
    assert all(layer.width % 16 == 0 or layer.width < 128 for layer in plan.replaced)
    assert sum(layer.width % 16 == 0 for layer in plan.replaced) >= 8
    # any smaller beta the search could have chosen overshoots the budget
    looser = plan_gdws(model, (3, 32, 32), beta=plan.beta * 0.999)
    assert looser.to_json()["rewritable_macs"]["ratio"] < 4.0
    # and every rewritten layer's error is within beta (rounding G up only lowers it)
    assert all(layer.error <= plan.beta * (1 + 1e-9) for layer in plan.replaced)  # beta is one of the sums


def test_channel_rounding_keeps_more_components_and_lowers_the_error():
    model = zoo.get("resnet18").build().eval()
    exact = plan_gdws(model, (3, 32, 32), beta=40.0, channel_multiple=1)
    rounded = plan_gdws(model, (3, 32, 32), beta=40.0, channel_multiple=16)
    for a, b in zip(exact.replaced, rounded.replaced):
        assert b.width >= a.width and 8 * (b.width - a.width) <= a.width and b.error <= a.error
        assert b.width % 16 == 0 or b.width == a.width


def test_impossible_requests_are_user_errors():
    with pytest.raises(UserError, match="exactly one"):
        plan_gdws(_mixed(), (3, 16, 16), beta=1.0, budget=0.5)
    with pytest.raises(UserError, match="budget"):
        plan_gdws(_mixed(), (3, 16, 16), budget=1.5)
    with pytest.raises(UserError, match="cannot reach"):
        plan_gdws(_mixed(), (3, 16, 16), budget=0.001, channel_multiple=16, allocation="global")
    with pytest.raises(UserError, match="allocation"):
        plan_gdws(_mixed(), (3, 16, 16), budget=0.5, allocation="uniform")
    only_pointwise = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1))
    with pytest.raises(UserError, match="no convolution"):
        plan_gdws(only_pointwise, (3, 8, 8), beta=1.0)


def test_plan_json_describes_every_layer(tiny_model):
    plan = plan_gdws(make_tiny(), (3, 8, 8), budget=0.6, channel_multiple=1)
    doc = plan.to_json()
    assert [layer["name"] for layer in doc["layers"]] == ["conv", "conv2"]
    rewritten = [layer for layer in doc["layers"] if layer["replaced"]]
    assert rewritten and all(
        sum(int(g) * n for g, n in layer["g_histogram"].items()) == layer["G"] for layer in rewritten
    )
    assert np.isclose(doc["rewritable_macs"]["ratio"], plan.layers[1].original_macs / plan.layers[1].macs)


def test_chosen_layers_rewrite_exactly_those_layers_as_the_whole_model_plan_does():
    from deploy_robust.transforms.gdws.network import chosen_layers, gdws_conv

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.a = nn.Conv2d(16, 32, 3, padding=1)
            self.bn = nn.BatchNorm2d(32)
            self.b = nn.Conv2d(32, 32, 3, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.bn(self.a(torch.relu(self.stem(x))))))

    torch.manual_seed(0)
    model = Two().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    whole = plan_gdws(model, (3, 8, 8), budget=0.5, channel_multiple=1)
    assert {layer.name for layer in whole.replaced} == {"a", "b"}
    allocations = {layer.name: layer.allocation for layer in whole.replaced}
    x = torch.rand(2, 3, 8, 8)
    # both chosen: what the whole-model plan computes (its BatchNorm folded alike)
    everything = apply_gdws(copy.deepcopy(model), whole)
    chosen = apply_gdws(copy.deepcopy(model), chosen_layers(model, (3, 8, 8), allocations))
    torch.testing.assert_close(chosen(x), everything(x), rtol=0, atol=1e-6)
    # one chosen: only it is rewritten, the other layer and its BatchNorm are the model's own
    only_b = chosen_layers(model, (3, 8, 8), {"b": allocations["b"]})
    assert [layer.name for layer in only_b.replaced] == ["b"]
    rewritten = apply_gdws(copy.deepcopy(model), only_b)
    assert (
        isinstance(rewritten.b, GDWSConv2d)
        and type(rewritten.a) is nn.Conv2d
        and isinstance(rewritten.bn, nn.BatchNorm2d)
    )
    h = torch.relu(model.bn(model.a(torch.relu(model.stem(x)))))
    torch.testing.assert_close(rewritten(x), gdws_conv(model.b, allocations["b"])(h), rtol=0, atol=1e-6)
    assert not torch.allclose(rewritten(x), model(x), atol=1e-3)  # half the MACs: an approximation
    with pytest.raises(UserError, match="not convolutions"):
        chosen_layers(model, (3, 8, 8), {"head": [1] * 16})
