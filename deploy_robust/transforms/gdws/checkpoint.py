"""Saving a GDWS-rewritten model as a weights-only checkpoint, and rebuilding it at load time.

The file holds the state_dict and, under CHECKPOINT_KEY, the architecture name, input spec
and the plan; `deploy_robust.ingest.load_model` rebuilds the architecture, gives it the
plan's structure (`network.restructure`) and loads the weights, with no pickled code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.errors import UserError
from deploy_robust.model import arch as arch_resolver
from deploy_robust.model.checkpoint import extract_state_dict, load_state_dict
from deploy_robust.model.kind import KindLoad, ModelKind
from deploy_robust.spec import InputSpec
from deploy_robust.transforms.gdws.network import GDWSPlan, restructure

CHECKPOINT_KEY = "deploy_robust_gdws"


def save_gdws_checkpoint(
    path: str | Path, module: nn.Module, arch: str | None, spec: InputSpec, plan: GDWSPlan
) -> Path:
    if arch is None:
        raise UserError(
            "gdws -o writes a weights-only checkpoint and needs the model's architecture: use a "
            "state_dict checkpoint with --arch (or a built-in model file); to export any other model, "
            "use deploy-robust export --gdws-beta/--gdws-budget"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        CHECKPOINT_KEY: {"arch": arch, "input": spec.to_json(), "plan": plan.to_json()},
        "state_dict": module.state_dict(),
    }
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    return write_file_atomic(path, buffer.getvalue())


def build_from_checkpoint(
    config: dict[str, Any], trust: arch_resolver.CodeTrust, source: str
) -> tuple[nn.Module, InputSpec, str]:
    """(untrained module with the GDWS structure, input spec, arch name) from a checkpoint's config."""
    architecture = trust.resolve_recorded(config.get("arch"), source)
    spec = InputSpec.from_json(config["input"])
    module = restructure(architecture.build(spec.num_classes), config["plan"])
    return module, spec, architecture.name


def load_checkpoint(obj: dict, name: str, trust: arch_resolver.CodeTrust) -> KindLoad:
    """A checkpoint written by `deploy-robust gdws`: the architecture rebuilt with the plan's structure."""
    config = obj[CHECKPOINT_KEY]
    module, spec, arch = build_from_checkpoint(config, trust, name)
    dtypes = load_state_dict(module, extract_state_dict(obj, name), f"{arch} (GDWS)")
    return KindLoad(module, spec, arch, "gdws_checkpoint", dtypes, transforms={"gdws": config["plan"]})


def describe_plan(plan: dict, stochastic: bool = False) -> str:
    rewritten = [layer for layer in plan["layers"] if layer["replaced"]]
    how = f"budget {plan['budget']:g}" if plan.get("budget") is not None else f"beta {plan['beta']:.4g}"
    return (
        f"GDWS ({how}): {len(rewritten)} of {len(plan['layers'])} convolutions rewritten, "
        f"{plan['model_macs']['ratio']:.2f}x fewer MACs in the model"
    )


KIND = ModelKind("gdws", CHECKPOINT_KEY, load_checkpoint, describe_plan)
