"""Read and write bundle directories; writes are atomic (temporary directory, then rename)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_robust.bundle import manifest as manifest_schema
from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec

MANIFEST = "manifest.json"


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest["model"]["file"]

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_json(self.manifest["input"])

    @property
    def precision(self) -> str:
        return self.manifest["precision"]["mode"]

    @property
    def fixed_batch(self) -> int | None:
        batch = self.manifest["model"].get("batch", "dynamic")
        return None if batch == "dynamic" else int(batch)

    def write_file(self, name: str, data: bytes | str) -> Path:
        """Add or replace one file (e.g. bench.json) atomically."""
        return write_file_atomic(self.path / name, data)


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def open_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    if not path.exists():
        raise UserError(f"bundle not found: {path}")
    if not is_bundle(path):
        raise UserError(f"{path} is not a bundle (no {MANIFEST})")
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path / MANIFEST}: not valid JSON ({e})") from None
    bundle = Bundle(path, manifest_schema.validate(doc, str(path / MANIFEST)))
    if not bundle.model_path.is_file():
        raise UserError(f"{path}: the manifest names {bundle.model_path.name}, which is missing")
    return bundle


def write_bundle(out: str | Path, files: dict[str, bytes], manifest: dict[str, Any]) -> Bundle:
    """Write `files` and the manifest to `out` all at once: readers never see half a bundle.

    An existing bundle at `out` is replaced; any other non-empty directory is left alone.
    """
    out = Path(out)
    if out.exists() and not is_bundle(out) and (out.is_file() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not a bundle; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_text(manifest_schema.dumps(manifest))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out, manifest)


def write_file_atomic(path: Path, data: bytes | str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path
