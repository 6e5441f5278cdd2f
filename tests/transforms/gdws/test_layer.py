import pytest
import torch
from torch import nn

from deploy_robust.transforms.gdws.layer import GDWSConv2d


def test_g_c_filters_per_input_channel_then_a_pointwise_mix():
    layer = GDWSConv2d(3, 4, [2, 0, 1], (3, 3), padding=1)
    assert layer.width == 3 and layer.gathers and layer.channel_index.tolist() == [0, 0, 2]
    assert layer(torch.rand(2, 3, 5, 5)).shape == (2, 4, 5, 5)


def test_one_filter_per_channel_is_a_plain_depthwise_separable_conv_without_a_gather():
    layer = GDWSConv2d(3, 4, [1, 1, 1], (3, 3))
    assert not layer.gathers and "gather=False" in repr(layer)


def test_like_copies_a_convolutions_geometry():
    conv = nn.Conv2d(2, 5, 3, stride=2, padding=1, bias=False)
    layer = GDWSConv2d.like(conv, [1, 2])
    assert layer.depthwise.stride == (2, 2) and layer.pointwise.bias is None
    assert layer(torch.rand(1, 2, 8, 8)).shape == conv(torch.rand(1, 2, 8, 8)).shape


@pytest.mark.parametrize("allocation", [[1, 1], [0, 0, 0], [1, -1, 1]])
def test_bad_allocations_are_refused(allocation):
    with pytest.raises(ValueError, match="allocation"):
        GDWSConv2d(3, 4, allocation, (3, 3))
