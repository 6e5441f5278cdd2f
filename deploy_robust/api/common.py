"""What every verb's request and result share: how to read a model file, and the result's shape."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from deploy_robust import gates
from deploy_robust.bundle import Bundle
from deploy_robust.ingest import LoadedModel, SpecOverrides, load_model
from deploy_robust.transforms.gdws.network import GDWSPlan


@dataclass(frozen=True)
class ModelOptions:
    """How to read a model file that is not a bundle (the reference, or eval's model)."""

    arch: str | None = None
    trust_pickle: bool = False
    trust_code: bool = False
    overrides: SpecOverrides | None = None

    def load(self, path: str | Path) -> LoadedModel:
        return load_model(
            path, self.arch, trust_pickle=self.trust_pickle, trust_code=self.trust_code, overrides=self.overrides
        )

    def load_reference(self, path: str | Path, bundle: Bundle) -> LoadedModel:
        """The float model a bundle is compared with: its input shape, classes and normalization are the
        bundle's, except where the user said otherwise (nothing asked twice)."""
        said = self.overrides or SpecOverrides()
        spec = bundle.spec
        overrides = SpecOverrides(
            shape=said.shape or spec.shape,
            mean=said.mean if said.mean is not None else spec.mean,
            std=said.std if said.std is not None else spec.std,
            num_classes=said.num_classes or spec.num_classes,
        )
        return replace(self, overrides=overrides).load(path)


@dataclass
class Result:
    """A run's JSON document (with its `gates`), the files it wrote (verify), the bundle it made (export)."""

    document: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    bundle: Bundle | None = None
    gdws_plan: GDWSPlan | None = None
    model: nn.Module | None = None  # the module a training verb made (train, dq, gdws, ensemble)

    @property
    def gates(self) -> list[dict[str, Any]]:
        return self.document.get("gates", [])

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.gates)

    @property
    def failure(self) -> str | None:
        return gates.failure_message(self.gates)
