"""The CIFAR-10 ResNet-18 that pyautoattack's examples ship trained weights for (`examples/model_test.pt`).

Written here from its description (He et al. 2016, the CIFAR variant): a 3x3 stem convolution with no
max-pool, BasicBlocks [2, 2, 2, 2] at 64/128/256/512 channels, a 1x1 convolution + BatchNorm shortcut
where the shape changes, 4x4 average pooling and a `linear` head; inputs in [0, 1], no normalization
layer. The parameter names match the state_dict's (`conv1`, `bn1`, `layerN.M.conv1/bn1/conv2/bn2/shortcut`,
`linear`), so a user loads it as

    deploy-robust export model_test.pt --arch benchmarks/arch/cifar_resnet18.py:build --input-shape 3,32,32 ...
"""

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, inputs = (64, 128, 256, 512), 64
        for index, planes in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            setattr(
                self, f"layer{index}", nn.Sequential(BasicBlock(inputs, planes, stride), BasicBlock(planes, planes, 1))
            )
            inputs = planes
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4).flatten(1)
        return self.linear(out)


def build(num_classes: int = 10) -> nn.Module:
    return ResNet18(num_classes)
