"""Trained-model files: weights plus what rebuilds them, so `export`/`verify` need no --arch.

The file is a plain torch.save dict: `state_dict` and, under MODEL_KEY, the architecture
name (a built-in, or an absolute `file.py:factory`), the input spec, the training settings,
and, for Defensive Quantization models, the quantization config (`dq`). `load_model`
rebuilds the architecture (and its quantizers) and loads the weights; nothing is unpickled
but tensors and plain containers.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.model import arch as arch_resolver
from deploy_robust.spec import InputSpec

MODEL_KEY = "deploy_robust_model"


def portable_arch(arch: str) -> str:
    """A user architecture file recorded by absolute path, so the model loads from any directory."""
    if arch_resolver.is_code(arch):
        file_part, factory = arch.rsplit(":", 1)
        return f"{Path(file_part).resolve()}:{factory}"
    return arch


def save_model_file(
    path: str | Path,
    module: nn.Module,
    arch: str,
    spec: InputSpec,
    training: dict[str, Any],
    dq: dict[str, Any] | None = None,
) -> Path:
    config: dict[str, Any] = {"arch": portable_arch(arch), "input": spec.to_json(), "training": training}
    if dq is not None:
        config["dq"] = dq
    buffer = io.BytesIO()
    torch.save({MODEL_KEY: config, "state_dict": module.state_dict()}, buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file_atomic(path, buffer.getvalue())
