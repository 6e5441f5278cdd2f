"""Built-in architectures, each with its input spec (shape, normalization, classes).

The entries named after a shared checkpoint carry the normalization that checkpoint was trained with. The
generic ones (resnet18, preact_resnet18, vgg16_bn, wrn28_4) carry none: a state_dict brought for them is
taken to expect raw [0, 1] images, as RobustBench's models do (the model owns its normalization), unless the
user passes --mean/--std. `train` normalizes them with CIFAR-10's mean/std (`train_spec`) and records that in
the model file it writes, so export reads it back from there.

`get(name)` returns a `ZooEntry`; `entry.build()` the untrained module. The six models of
../shared/data/models are named after their checkpoint files, so
`deploy-robust export resnet2b.pth` finds its architecture by the file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec
from deploy_robust.zoo.cifar_standards import preact_resnet18, resnet18, vgg16_bn, wrn28_4
from deploy_robust.zoo.resnet2b import ResNet2b
from deploy_robust.zoo.small_cnns import cifar_cnn_a, cifar_conv_small, digits_cnn, madry_cnn_tiny, mnist_cnn_a

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[..., nn.Module]
    spec: InputSpec
    description: str
    train_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) `train` uses

    def build(self, num_classes: int | None = None) -> nn.Module:
        return self.factory(num_classes or self.spec.num_classes)

    @property
    def train_spec(self) -> InputSpec:
        """The spec `train` trains (and records) with: the entry's own, or its training normalization."""
        if self.train_normalization is None:
            return self.spec
        return self.spec.replace(mean=self.train_normalization[0], std=self.train_normalization[1])


def _cifar(mean=CIFAR10_MEAN, std=CIFAR10_STD) -> InputSpec:
    return InputSpec(shape=(3, 32, 32), num_classes=10, mean=mean, std=std)


_MNIST = InputSpec(shape=(1, 28, 28), num_classes=10)
_RAW_CIFAR = InputSpec(shape=(3, 32, 32), num_classes=10)  # no normalization: the weights' owner decides
_CIFAR_NORM = (CIFAR10_MEAN, CIFAR10_STD)

ENTRIES: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "cifar_cnn_a_adv",
            cifar_cnn_a,
            _cifar((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)),
            "CNN-A (2 conv, 2 fc), PGD-trained CIFAR-10 eps 2/255 (alpha-beta-CROWN)",
        ),
        ZooEntry(
            "cifar_conv_small_pgd",
            cifar_conv_small,
            _cifar((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)),
            "ConvSmall (2 conv, 2 fc, no padding), PGD-trained CIFAR-10 eps 2/255 (alpha-beta-CROWN)",
        ),
        ZooEntry(
            "resnet2b",
            lambda n: ResNet2b(n),
            _cifar(),
            "2-block residual net without BN, adversarially trained CIFAR-10 eps 2/255 (alpha-beta-CROWN)",
        ),
        ZooEntry(
            "mnist_cnn_a_adv", mnist_cnn_a, _MNIST, "CNN-A (2 conv, 2 fc), PGD-trained MNIST eps 0.3 (alpha-beta-CROWN)"
        ),
        ZooEntry(
            "madrycnn_no_maxpool_tiny",
            madry_cnn_tiny,
            _MNIST,
            "tiny Madry CNN without max-pool, PGD-trained MNIST eps 0.3 (alpha-beta-CROWN)",
        ),
        ZooEntry(
            "convex_adversarial_mnist",
            mnist_cnn_a,
            _MNIST,
            "CNN-A shape, provably robust training MNIST eps 0.1 (Wong and Kolter 2018)",
        ),
        ZooEntry("resnet18", resnet18, _RAW_CIFAR, "CIFAR ResNet-18 (3x3 stem, BN), 11.2M params", _CIFAR_NORM),
        ZooEntry("preact_resnet18", preact_resnet18, _RAW_CIFAR, "CIFAR PreAct-ResNet-18, 11.2M params", _CIFAR_NORM),
        ZooEntry("vgg16_bn", vgg16_bn, _RAW_CIFAR, "CIFAR VGG-16 with batch norm, 14.7M params", _CIFAR_NORM),
        ZooEntry("wrn28_4", wrn28_4, _RAW_CIFAR, "CIFAR WideResNet-28-4, 5.8M params", _CIFAR_NORM),
        ZooEntry(
            "digits_cnn",
            digits_cnn,
            InputSpec(shape=(1, 8, 8), num_classes=10),
            "tiny CNN for scikit-learn's 8x8 digits (the demo's default)",
        ),
    )
}


def names() -> list[str]:
    return sorted(ENTRIES)


def find(name: str) -> ZooEntry | None:
    """The entry called `name` (case- and dash-insensitive), or None."""
    return ENTRIES.get(name.lower().replace("-", "_"))


def get(name: str) -> ZooEntry:
    entry = find(name)
    if entry is None:
        raise UserError(
            f"unknown architecture '{name}'; built-in ones are: {', '.join(names())} "
            "(or pass --arch path/to/file.py:factory)"
        )
    return entry
