"""The bundle manifest: a versioned JSON document that makes `model.onnx` usable without the original code."""

from __future__ import annotations

import json
import platform
from typing import Any

from deploy_robust.errors import UserError

SCHEMA = "deploy-robust/bundle"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "schema_version", "model", "input", "precision", "target", "source", "tools", "seed")


def tool_versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime
    import torch

    import deploy_robust

    return {"deploy_robust": deploy_robust.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def dumps(manifest: dict[str, Any]) -> str:
    """Canonical text (sorted keys) so the same export gives the same bytes."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def validate(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{where}: not a deploy-robust bundle manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(f"{where}: manifest schema version {version} is newer than this deploy-robust "
                        f"reads ({SCHEMA_VERSION}); upgrade deploy-robust")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise UserError(f"{where}: manifest lacks {', '.join(missing)}")
    return manifest
