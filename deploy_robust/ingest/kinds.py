"""The model-kind registry: one explicit tuple of every kind the pipeline knows.

Adding a kind is adding its module (with a `ModelKind`) and one entry here. The loader finds
a self-describing checkpoint's kind by its key; `info` and `export` describe a bundle's
transforms and defense through the kind that recorded them; `export` asks the kinds for a
trained-grid form, `verify` for the defense's attack plan.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from deploy_robust.bundle import Manifest
from deploy_robust.defenses import empir, sap, squeeze
from deploy_robust.model.kind import ModelKind
from deploy_robust.transforms.dq import checkpoint as dq
from deploy_robust.transforms.gdws import checkpoint as gdws

KINDS: tuple[ModelKind, ...] = (empir.KIND, gdws.KIND, dq.KIND, sap.KIND, squeeze.KIND)


def for_checkpoint(obj: Any) -> ModelKind | None:
    """The kind whose self-describing checkpoint `obj` is (a torch.load'ed dict), if any."""
    if not isinstance(obj, dict):
        return None
    return next((k for k in KINDS if k.checkpoint_key is not None and k.checkpoint_key in obj), None)


def describe_transforms(transforms: dict[str, Any]) -> str:
    """One clause per transform a model or bundle records, by the kind that wrote it."""
    by_name = {k.name: k for k in KINDS if k.defense_kind is None and k.describe}
    return "; ".join(
        by_name[name].describe(section) if name in by_name else name for name, section in transforms.items() if section
    )


def describe_defense(manifest: Manifest) -> str:
    """One line on the defense a bundle's manifest records (for export and info)."""
    section = manifest.defense
    kind = next((k for k in KINDS if k.defense_kind == section.kind), None)
    return kind.describe(section.fields, manifest.model.stochastic) if kind else section.kind


def attack_plan_for(manifest: Manifest) -> Callable | None:
    """The attack plan of the kind that wrote the bundle's defense section (verify's `defense_plan`), if any."""
    section = manifest.defense
    kind = next((k for k in KINDS if section is not None and k.defense_kind == section.kind), None)
    return kind.attack_plan if kind else None


def trained_grid_kind(module: nn.Module) -> tuple[ModelKind, Any] | None:
    """(kind, (module to export, TrainedGrid)) for a model that carries its own quantization grids."""
    for kind in KINDS:
        form = kind.trained_grid_form(module) if kind.trained_grid_form else None
        if form is not None:
            return kind, form
    return None
