import torch
from torch import nn

from deploy_robust.quant.fake_quant import FrozenFakeQuant, freeze, is_fake_quant


def _observed_model():
    fq = torch.ao.quantization.FakeQuantize(quant_min=0, quant_max=255)
    model = nn.Sequential(fq, nn.Linear(4, 2))
    model(torch.rand(16, 4))  # the observer sets scale and zero point
    return model.eval()


def test_freeze_replaces_each_fake_quantizer_with_a_stateless_one_on_the_same_grid():
    model = _observed_model()
    x = torch.rand(8, 4)
    want = model(x)
    frozen, count = freeze(model)
    assert count == 1 and isinstance(frozen[0], FrozenFakeQuant) and not is_fake_quant(frozen[0])
    assert torch.allclose(frozen(x), want)
    frozen(torch.rand(8, 4) * 10)  # new data moves no scale
    assert torch.allclose(frozen(x), want)
    assert isinstance(model[0], torch.ao.quantization.FakeQuantize)  # the input model is untouched


def test_a_model_without_fake_quantizers_comes_back_as_it_is():
    model = nn.Linear(2, 2)
    assert freeze(model) == (model, 0)
