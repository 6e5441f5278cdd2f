import torch

from deploy_robust.zoo.cifar_standards import preact_resnet18, resnet18, vgg16_bn, wrn28_4


def test_cifar_resnet18_keeps_the_3x3_stem_and_ends_at_4x4():
    model = resnet18().eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    features = {}
    model.layer4.register_forward_hook(lambda m, i, o: features.update(shape=o.shape))
    model(torch.rand(1, 3, 32, 32))
    assert features["shape"] == (1, 512, 4, 4)


def test_preact_blocks_normalize_before_their_convolutions():
    block = preact_resnet18().layer1[0]
    names = [name for name, _ in block.named_children()]
    assert names.index("bn1") < names.index("conv1")


def test_vgg_and_wide_resnet_classify_cifar_images():
    for factory in (vgg16_bn, wrn28_4):
        assert factory(num_classes=3).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 3)
