import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.quant.scheme import TrainedGrid
from deploy_robust.transforms.dq.model import (
    DQConfig,
    deploy_form,
    fold_batchnorms,
    input_range,
    is_dq_model,
    prepare_dq,
    trained_grid,
)


def test_folding_a_batchnorm_keeps_the_function_and_removes_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    model[1].running_mean.uniform_(-1, 1), model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.rand(2, 1, 5, 5)
    want = model(x)
    assert fold_batchnorms(model) == {"0": "1"} and isinstance(model[1], nn.Identity)
    assert torch.allclose(model(x), want, atol=1e-5)


def test_a_dq_model_has_a_grid_and_its_deploy_form_holds_the_grid_values():
    torch.manual_seed(0)
    net = zoo.get("digits_cnn").build().eval()
    dq, config = prepare_dq(net, 4, 4, torch.rand(32, 1, 8, 8))
    assert is_dq_model(dq) and not is_dq_model(net) and config.label == "w4a4"
    grid = trained_grid(dq)
    assert isinstance(grid, TrainedGrid) and set(grid.weight_levels.values()) <= {7, 63}
    deployed = deploy_form(dq)
    name, layer = next((n, m) for n, m in dq.named_modules() if hasattr(m, "quantized_weight"))
    deployed_layer = deployed.get_submodule(name)
    assert type(deployed_layer) is nn.Conv2d and torch.equal(deployed_layer.weight, layer.quantized_weight())
    x = torch.rand(8, 1, 8, 8)  # activations unrounded (the exporter writes that rounding as Q/DQ): close, not equal
    assert (deployed(x).argmax(1) == dq(x).argmax(1)).float().mean() >= 0.5
    assert DQConfig.from_json(config.to_json()) == config


def test_the_input_range_is_that_of_normalized_unit_images():
    assert input_range(None, None) == (0.0, 1.0)
    assert input_range((0.5,), (0.25,)) == (-2.0, 2.0)
