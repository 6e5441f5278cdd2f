import torch
from torch import nn

from deploy_robust.normalize import HalfPrecision, normalizer, with_normalization
from deploy_robust.spec import InputSpec


def test_normalization_is_folded_in_front_of_the_model():
    spec = InputSpec((3, 2, 2), 10, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    x = torch.rand(2, 3, 2, 2)
    wrapped = with_normalization(nn.Identity(), spec)
    expected = (x - torch.tensor(spec.mean).reshape(1, 3, 1, 1)) / torch.tensor(spec.std).reshape(1, 3, 1, 1)
    assert torch.allclose(wrapped(x), expected) and torch.allclose(normalizer(spec)(x), expected)


def test_no_normalization_leaves_the_model_alone():
    model = nn.Identity()
    assert with_normalization(model, InputSpec((1, 2, 2), 2)) is model and normalizer(InputSpec((1, 2, 2), 2)) is None


def test_half_precision_computes_in_fp16_behind_fp32_casts():
    linear = nn.Linear(4, 2)
    out = HalfPrecision(linear)(torch.rand(3, 4))
    assert out.dtype == torch.float32 and linear.weight.dtype == torch.float32  # the original is not touched
