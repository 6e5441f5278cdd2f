"""The bundle: `model.onnx` + `manifest.json` (+ what later stages add), the one contract between stages."""

from deploy_robust.bundle.manifest import SCHEMA, SCHEMA_VERSION, Manifest
from deploy_robust.bundle.store import Bundle, is_bundle, open_bundle, write_bundle

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Bundle", "Manifest", "is_bundle", "open_bundle", "write_bundle"]
