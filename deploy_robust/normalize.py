"""Wrappers that give every exported engine one interface: float32 [0, 1] images in, float32 logits out."""

from __future__ import annotations

import copy

import torch
from torch import nn

from deploy_robust.spec import InputSpec


class Normalized(nn.Module):
    """(x - mean) / std in float32, then the model: normalization folded into the graph."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


class HalfPrecision(nn.Module):
    """Runs the model in float16 behind float32 input and output casts."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def with_normalization(model: nn.Module, spec: InputSpec) -> nn.Module:
    """`model` taking [0, 1] images: wrapped in `Normalized` when the spec has a normalization."""
    if not spec.normalized:
        return model
    return Normalized(model, spec.mean, spec.std).eval()


def normalizer(spec: InputSpec) -> nn.Module | None:
    """The spec's normalization alone ([0, 1] images in, model inputs out), or None if it has none."""
    return Normalized(nn.Identity(), spec.mean, spec.std).eval() if spec.normalized else None
