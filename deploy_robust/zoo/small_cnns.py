"""The small robust CNNs of ../shared/data/models, defined so their state_dict keys match.

Each is an `nn.Sequential` whose indices are the checkpoint's keys
(0 Conv, 1 ReLU, 2 Conv, 3 ReLU, 4 Flatten, 5 Linear, 6 ReLU, 7 Linear).
"""

from __future__ import annotations

from torch import nn


def two_conv_mlp(
    in_channels: int, convs: tuple[tuple[int, int, int, int], ...], flat: int, hidden: int, num_classes: int = 10
) -> nn.Sequential:
    """Conv-ReLU-Conv-ReLU-Flatten-Linear-ReLU-Linear; `convs` = ((out, kernel, stride, pad), ...)."""
    (c1, k1, s1, p1), (c2, k2, s2, p2) = convs
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, k1, stride=s1, padding=p1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, k2, stride=s2, padding=p2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def cifar_cnn_a(num_classes: int = 10) -> nn.Sequential:
    return two_conv_mlp(3, ((16, 4, 2, 1), (32, 4, 2, 1)), 2048, 100, num_classes)


def cifar_conv_small(num_classes: int = 10) -> nn.Sequential:
    return two_conv_mlp(3, ((16, 4, 2, 0), (32, 4, 2, 0)), 1152, 100, num_classes)


def mnist_cnn_a(num_classes: int = 10) -> nn.Sequential:
    return two_conv_mlp(1, ((16, 4, 2, 1), (32, 4, 2, 1)), 1568, 100, num_classes)


def madry_cnn_tiny(num_classes: int = 10) -> nn.Sequential:
    return two_conv_mlp(1, ((4, 5, 2, 2), (8, 5, 2, 2)), 392, 128, num_classes)


def digits_cnn(num_classes: int = 10) -> nn.Sequential:
    """A tiny CNN for scikit-learn's 8x8 digits: the demo's embedded default."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
