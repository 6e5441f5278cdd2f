"""ModelKind: what the pipeline needs from one kind of model (plain, GDWS, DQ, EMPIR, SAP, squeeze).

A kind module (under `transforms/` or `defenses/`) defines one `ModelKind`; the registry that
lists them all is `deploy_robust.ingest.kinds.KINDS`, one explicit tuple (no import-time
registration). A kind that writes a self-describing checkpoint names its key and how to load
it; every kind says how to describe the manifest section it records (`transforms[name]`, or
the `defense` section whose `kind` is `defense_kind`); a kind that trained its own grids gives
its export form, a defense that needs attacks of its own gives its attack plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from deploy_robust.model.arch import CodeTrust
from deploy_robust.spec import InputSpec


@dataclass(frozen=True)
class KindLoad:
    """A checkpoint, rebuilt: the module (weights loaded) and what the manifest records (spec and arch are None
    where the file says neither: a pickled module)."""

    module: nn.Module
    spec: InputSpec | None
    arch: str | None
    format: str
    dtypes: dict[str, str]
    defense: dict[str, Any] | None = None
    transforms: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelKind:
    name: str
    # the checkpoint dict key that marks this kind's files, and how to rebuild them (checkpoint, file name, trust)
    checkpoint_key: str | None = None
    load: Callable[[dict, str, CodeTrust], KindLoad] | None = None
    # one line on the manifest section this kind records: (section, engine is stochastic) -> text
    describe: Callable[[dict, bool], str] | None = None
    defense_kind: str | None = None  # the `kind` its defense section carries; None for transforms
    # export: a model of this kind that carries its own quantization grids -> (module to export, its
    # quant.scheme.TrainedGrid), or None when the module is not one; `float_export=False` refuses fp32/fp16
    trained_grid_form: Callable[[nn.Module], tuple[nn.Module, Any] | None] | None = None
    float_export: bool = True
    title: str = ""  # how messages name the kind ("Defensive Quantization"); default: its name
    # verify: the attacks this kind's defense needs beyond the suite's. (defense section, the twin S as a
    # PickOutput, the suite's attacks) -> (extra verify.suites.Attack list, the models they run on by key)
    attack_plan: Callable[[Any, Any, list], tuple[list, dict[str, nn.Module]]] | None = None
