import torch
from torch import nn

from deploy_robust.model.surgery import batchnorm_after_conv, batchnorm_scale, set_module


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)
        self.b, self.bn_b = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

    def forward(self, x):
        b = self.b(x)
        return self.bn_a(self.a(x)) + self.bn_b(b) + b  # b's output has two consumers: not foldable


def test_only_a_batchnorm_that_is_its_convs_sole_consumer_folds():
    assert batchnorm_after_conv(_Branchy()) == {"a": "bn_a"}


def test_set_module_replaces_nested_modules_by_name():
    model = nn.Sequential(nn.Sequential(nn.ReLU(), nn.ReLU()))
    set_module(model, "0.1", nn.Identity())
    assert isinstance(model[0][1], nn.Identity)


def test_the_scale_is_what_eval_batchnorm_multiplies_by():
    bn = nn.BatchNorm2d(3).eval()
    bn.running_var.fill_(4.0)
    bn.weight.data = torch.tensor([1.0, 2.0, 3.0])
    x = torch.zeros(1, 3, 1, 1)
    bn.running_mean.zero_(), bn.bias.data.zero_()
    x[0, :, 0, 0] = 1
    assert torch.allclose(bn(x).flatten().double(), batchnorm_scale(bn))
    assert batchnorm_scale(bn).dtype == torch.float64
