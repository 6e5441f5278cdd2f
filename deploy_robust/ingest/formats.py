"""Tell what kind of model file a path holds, from its bytes (never by unpickling it)."""

from __future__ import annotations

import zipfile
from enum import Enum
from pathlib import Path

import onnx

from deploy_robust.errors import UserError


class ModelFormat(str, Enum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported_program"
    TORCH_SAVE = "torch_save"  # torch.save zip archive: a state_dict, a dict, or a pickled module
    LEGACY_TORCH_SAVE = "legacy_torch_save"  # pre-1.6 torch.save (plain pickle stream)


_PICKLE_PROTOCOL_2_PLUS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def sniff(path: Path) -> ModelFormat:
    """The format of the model file at `path`; UserError when it is none we read."""
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a model file")
    if path.stat().st_size == 0:
        raise UserError(f"model file is empty: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        return _sniff_zip(path)
    if head[:2] in _PICKLE_PROTOCOL_2_PLUS:
        return ModelFormat.LEGACY_TORCH_SAVE
    if path.suffix.lower() == ".onnx" or _parses_as_onnx(path):
        return ModelFormat.ONNX
    raise UserError(
        f"{path} is not a model file deploy-robust reads (expected a TorchScript archive, "
        "a torch.export .pt2, a torch.save checkpoint or an ONNX model)"
    )


def _sniff_zip(path: Path) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception as e:  # zipfile on untrusted bytes: BadZipFile, a bad name encoding, a bad header...
        raise UserError(f"{path} is a damaged or truncated archive ({type(e).__name__}: {e})") from None
    stems = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if any(s.startswith("models/") and s.endswith(".json") for s in stems) or "archive_format" in stems:
        return ModelFormat.EXPORTED_PROGRAM
    if any(s.startswith("code/") for s in stems):
        return ModelFormat.TORCHSCRIPT
    if "data.pkl" in stems:
        return ModelFormat.TORCH_SAVE
    raise UserError(f"{path} is a zip archive but not a PyTorch model archive")


def _parses_as_onnx(path: Path) -> bool:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.node) > 0
