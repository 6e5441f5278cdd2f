"""The bundle manifest: a versioned JSON document that makes `model.onnx` usable without the original code."""

from __future__ import annotations

import json
import platform
from typing import Any

from deploy_robust import limits
from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec

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
    try:
        _check_values(manifest)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return manifest


def _check_values(manifest: dict[str, Any]) -> None:
    """Types and ranges of every field a reader acts on, before anything is allocated from them."""
    model = manifest["model"]
    if not isinstance(model, dict):
        raise UserError("'model' must be an object")
    name = model.get("file")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"model.file must be a plain file name inside the bundle; got {name!r}")
    batch = model.get("batch", "dynamic")
    if batch != "dynamic":
        limits.whole_number(batch, "model.batch", 1, limits.MAX_BATCH)
    for key in ("sha256",):
        if key in model and not _is_sha256(model[key]):
            raise UserError(f"model.{key} must be a sha256 hex digest")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) and "/" not in k and _is_sha256(v)
                                              for k, v in files.items()):
        raise UserError("'files' must map plain file names to sha256 hex digests")
    InputSpec.from_json(manifest["input"])
    precision = manifest["precision"]
    if not isinstance(precision, dict) or not isinstance(precision.get("mode"), str):
        raise UserError("precision.mode must be a string")
    if not isinstance(manifest["target"], str):
        raise UserError("'target' must be a string")
    limits.whole_number(manifest["seed"], "seed", 0, limits.MAX_SEED)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
