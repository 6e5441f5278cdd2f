"""Model files written by `deploy-robust train` and `dq`, rebuilt at load time (the DQ model kind).

The file (`deploy_robust.model.model_file`) records the architecture and input spec and, for a
Defensive Quantization model, its quantization config; a DQ file gets its quantizers back
(`prepare_structure`) before the weights load. A plain trained file is the same format with no
`dq` section, so this kind reads both.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from deploy_robust.model.arch import CodeTrust
from deploy_robust.model.checkpoint import extract_state_dict, load_state_dict
from deploy_robust.model.kind import KindLoad, ModelKind
from deploy_robust.model.model_file import MODEL_KEY
from deploy_robust.spec import InputSpec
from deploy_robust.transforms.dq.model import DQConfig, deploy_form, is_dq_model, prepare_structure, trained_grid


def build_from_model_file(config: dict[str, Any], trust: CodeTrust, source: str) -> tuple[nn.Module, InputSpec, str]:
    """(untrained module, with DQ quantizers when the file has them; input spec; arch name)."""
    architecture = trust.resolve_recorded(config.get("arch"), source)
    spec = InputSpec.from_json(config["input"])
    module = architecture.build(spec.num_classes)
    if config.get("dq"):
        module = prepare_structure(module, DQConfig.from_json(config["dq"]))
    return module, spec, architecture.name


def load_checkpoint(obj: dict, name: str, trust: CodeTrust) -> KindLoad:
    config = obj[MODEL_KEY]
    module, spec, arch = build_from_model_file(config, trust, name)
    dtypes = load_state_dict(module, extract_state_dict(obj, name), arch)
    dq = config.get("dq")
    transforms = {"dq": dq | {"training": config.get("training")}} if dq else None
    return KindLoad(module, spec, arch, "dq_model" if dq else "trained_model", dtypes, transforms=transforms)


def describe_config(dq: dict, stochastic: bool = False) -> str:
    training = dq.get("training") or {}
    kind = training.get("kind", "Defensive Quantization")
    adv = f", adv {training['adv']} eps {training['eps']:g}" if training.get("adv") not in (None, "none") else ""
    return (
        f"{kind}: w{dq['w_bits']}a{dq['a_bits']} (edge layers w{dq.get('edge_bits', 8)}, "
        f"{'int8' if dq.get('input_signed') else 'uint8'} input), {training.get('epochs', '?')} epochs{adv}"
    )


def trained_grid_form(module: nn.Module):
    """A DQ model exports its deploy form on exactly the grid it trained with."""
    return (deploy_form(module), trained_grid(module)) if is_dq_model(module) else None


KIND = ModelKind(
    "dq",
    MODEL_KEY,
    load_checkpoint,
    describe_config,
    trained_grid_form=trained_grid_form,
    float_export=False,
    title="Defensive Quantization",
)
