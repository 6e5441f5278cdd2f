"""Read torch.save checkpoints safely, find the state_dict inside, and load it with a clear report."""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy_robust.errors import UserError, first_line

_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")


def read_checkpoint(path: Path, trust_pickle: bool = False) -> Any:
    """torch.load with `weights_only=True`; a pickled Python object needs `trust_pickle`.

    The weights-only unpickler refuses anything but tensors and plain containers, so an
    untrusted file cannot run code here.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise UserError(f"could not unpickle {path}: {first_line(e)}") from None
        culprit = re.search(r"(?:GLOBAL|global)\s+([\w.]+)", str(e))
        what = f" (it references {culprit.group(1)})" if culprit else ""
        raise UserError(
            f"{path.name} is a pickled Python object{what}, not plain weights; unpickling it can run "
            "arbitrary code, so it was not loaded. Save a state_dict (torch.save(model.state_dict(), f)) "
            "and pass --arch, or, only if you trust where the file came from, pass --trust-pickle"
        ) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        if not trust_pickle:
            raise UserError(
                f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                f"{type(e).__name__}: {first_line(e)}"
            ) from None
        # With trust_pickle: the class the pickle names cannot be found.
        raise UserError(f"{path.name} needs Python code that is not importable here: {first_line(e)}") from None
    except Exception as e:  # torch's reader on untrusted bytes: any other failure means a damaged file
        raise UserError(
            f"{path.name} is not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{type(e).__name__}: {first_line(e)}"
        ) from None


def is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: Any, source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """The state_dict in `obj`: itself, under a usual key, or in a one-element list (recursively)."""
    if is_state_dict(obj):
        return OrderedDict(obj)
    if isinstance(obj, (list, tuple)) and len(obj) == 1:
        return extract_state_dict(obj[0], source)
    if isinstance(obj, dict):
        for key in _STATE_DICT_KEYS:
            if key in obj:
                return extract_state_dict(obj[key], source)
    kind = type(obj).__name__
    keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else ""
    raise UserError(
        f"no state_dict found in {source} (a {kind}{keys}); expected tensors by parameter name, "
        f"possibly under one of {', '.join(_STATE_DICT_KEYS)}"
    )


def strip_prefix(state: "OrderedDict[str, torch.Tensor]", model_keys: set[str]) -> "OrderedDict[str, torch.Tensor]":
    """Drop a wrapper prefix (`module.` from DataParallel, `model.`) when that makes the keys fit."""
    for prefix in ("module.", "model.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            stripped = OrderedDict((k[len(prefix) :], v) for k, v in state.items())
            if set(stripped) & model_keys:
                return stripped
    return state


def load_state_dict(module: nn.Module, state: "OrderedDict[str, torch.Tensor]", arch_name: str) -> dict[str, str]:
    """Load `state` into `module` (casting fp16/bf16 to the module's dtype); name every misfit.

    Returns the original dtype of each layer's weights, by layer name.
    """
    expected = module.state_dict()
    state = strip_prefix(state, set(expected))
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (checkpoint vs model): {_listing(mismatched)}")
    if problems:
        raise UserError(f"the weights do not fit architecture '{arch_name}': " + "; ".join(problems))
    module.load_state_dict(state, strict=False)
    return layer_dtypes(state)


def layer_dtypes(named_tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """dtype of each layer's floating-point tensors, keyed by layer (parameter name minus its last part)."""
    return group_by_layer(
        {name: str(t.dtype).replace("torch.", "") for name, t in named_tensors.items() if t.is_floating_point()}
    )


def group_by_layer(dtype_by_tensor: dict[str, str]) -> dict[str, str]:
    """{'conv.weight': 'float16', 'conv.bias': ...} -> {'conv': 'float16'} (first tensor of a layer wins)."""
    out: dict[str, str] = {}
    for name, dtype in dtype_by_tensor.items():
        out.setdefault(name.rsplit(".", 1)[0] if "." in name else name, dtype)
    return out


def _listing(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
