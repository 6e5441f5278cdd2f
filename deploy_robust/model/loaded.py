"""A loaded model as the pipeline carries it: the module, its InputSpec, where it came from.

Lower than `deploy_robust.ingest` (which reads files and dispatches on what they hold), so that
model kinds (transforms, defenses), training and verify can use these types without importing
the loader that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deploy_robust.model.checkpoint import layer_dtypes
from deploy_robust.normalize import with_normalization
from deploy_robust.spec import InputSpec


@dataclass
class SpecOverrides:
    """What the user said on the command line about the input; None means 'not said'."""

    shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None


@dataclass
class LoadedModel:
    """An ingested model. `module` takes normalized inputs; `reference()` takes [0, 1] images."""

    module: nn.Module
    spec: InputSpec
    source: dict[str, Any]
    fixed_batch: int | None = None
    layers: list[dict[str, str]] = field(default_factory=list)
    defense: dict[str, Any] | None = None  # set by deploy_robust.defenses; recorded in the manifest
    transforms: dict[str, Any] | None = None  # e.g. {"gdws": plan}; recorded in the manifest

    def reference(self) -> nn.Module:
        """The classifier on [0, 1] images, returning logits (a detector's or ensemble's extra outputs dropped)."""
        model = with_normalization(self.module, self.spec)
        return PickOutput(model, 0) if getattr(self.module, "extra_output_names", ()) else model


class PickOutput(nn.Module):
    """One output of a module that returns several (a detector's or an ensemble's)."""

    def __init__(self, module: nn.Module, index: int) -> None:
        super().__init__()
        self.module, self.index = module, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)[self.index]


def describe_layers(module: nn.Module, dtypes: dict[str, str]) -> list[dict[str, str]]:
    """One entry per weighted layer: name as in the torch model, its type and original dtype."""
    modules = dict(module.named_modules())
    layers = []
    for name in layer_dtypes(dict(module.named_parameters())):  # registration order
        sub = modules.get(name)
        # TorchScript modules keep their Python class name in `original_name`.
        kind = "tensor" if sub is None else getattr(sub, "original_name", type(sub).__name__)
        layers.append({"name": name, "type": kind, "source_dtype": dtypes.get(name, "float32")})
    return layers
