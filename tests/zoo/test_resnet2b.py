import torch

from deploy_robust.zoo.resnet2b import ResNet2b


def test_resnet2b_has_no_batchnorm_and_a_projection_shortcut_where_the_shape_changes():
    model = ResNet2b()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    first, second = model.layer1
    assert len(first.shortcut) == 1 and len(second.shortcut) == 0
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_identity_shortcut_adds_the_block_input():
    block = ResNet2b().layer1[1]
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight), torch.nn.init.zeros_(conv.bias)
    x = torch.rand(1, 16, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
