"""The bundle manifest: a versioned JSON document that makes `model.onnx` usable without the original code.

`Manifest.from_json` validates a document (types and ranges of every field a reader acts on),
migrates older schema versions, and gives typed sections; it is the only reader of the JSON,
so no module outside `bundle/` reads manifest keys by string. Model-kind sections (`source`,
`transforms`, the defense's own fields) stay mappings owned by their kind. `to_json` returns
the document exactly as written (export writes it with `dumps`: sorted keys, same bytes).

Schema versions: 1 (first), 2 (adds `files`, the sha256 of every file the manifest describes;
a version-1 document migrates with `files` = its model file's recorded sha256).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from deploy_robust import limits
from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec

SCHEMA = "deploy-robust/bundle"
SCHEMA_VERSION = 2
REQUIRED_KEYS = ("schema", "schema_version", "model", "input", "precision", "target", "source", "tools", "seed")


def tool_versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime
    import torch

    import deploy_robust

    return {
        "deploy_robust": deploy_robust.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def dumps(manifest: dict[str, Any]) -> str:
    """Canonical text (sorted keys) so the same export gives the same bytes."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def validate(manifest: Any, where: str) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{where}: not a deploy-robust bundle manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(
            f"{where}: manifest schema version {version} is newer than this deploy-robust "
            f"reads ({SCHEMA_VERSION}); upgrade deploy-robust"
        )
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
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and "/" not in k and _is_sha256(v) for k, v in files.items()
    ):
        raise UserError("'files' must map plain file names to sha256 hex digests")
    InputSpec.from_json(manifest["input"])
    precision = manifest["precision"]
    if not isinstance(precision, dict) or not isinstance(precision.get("mode"), str):
        raise UserError("precision.mode must be a string")
    layers = precision.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise UserError("precision.layers must be a list of objects")
    weights = precision.get("int8_weights")
    if weights is not None and (not isinstance(weights, dict) or weights.get("levels") not in (63, 127)):
        raise UserError("precision.int8_weights.levels must be 63 or 127")
    if not isinstance(manifest["target"], str):
        raise UserError("'target' must be a string")
    for key in ("calibration", "defense", "transforms"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise UserError(f"'{key}' must be an object or null")
    for key in ("source", "tools"):
        if not isinstance(manifest[key], dict):
            raise UserError(f"'{key}' must be an object")
    limits.whole_number(manifest["seed"], "seed", 0, limits.MAX_SEED)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def migrate(manifest: dict[str, Any]) -> dict[str, Any]:
    """The document in the current schema version (a validated older one is upgraded in memory)."""
    doc = dict(manifest)
    if doc["schema_version"] == 1:
        model = doc["model"]
        doc["files"] = {model["file"]: model["sha256"]} if model.get("sha256") else {}
        doc["schema_version"] = 2
    return doc


@dataclass(frozen=True)
class ModelSection:
    file: str
    sha256: str | None
    batch: int | None  # None: a dynamic batch dimension
    stochastic: bool
    opset: int | None
    exporter: str | None
    ir_version: int | None = None
    input_name: str | None = None
    output_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "opset": self.opset,
            "ir_version": self.ir_version,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "batch": "dynamic" if self.batch is None else self.batch,
            "exporter": self.exporter,
            "stochastic": self.stochastic,
        }


@dataclass(frozen=True)
class PrecisionSection:
    mode: str
    layers: tuple[dict[str, Any], ...]
    weight_rounding: str | None
    fallback: dict[str, Any] | None
    int8_weights: dict[str, Any] | None = None  # ort-cpu: the 8-bit weight range and where it runs exactly

    @property
    def int8_weight_levels(self) -> int | None:
        return int(self.int8_weights["levels"]) if self.int8_weights else None

    def to_json(self) -> dict[str, Any]:
        optional = {
            "weight_rounding": self.weight_rounding,
            "fallback": self.fallback,
            "int8_weights": self.int8_weights,
        }
        return {"mode": self.mode, "layers": list(self.layers)} | {k: v for k, v in optional.items() if v}


@dataclass(frozen=True)
class CalibrationSection:
    method: str
    num_images: int
    dataset: str | None
    percentile: float | None

    def to_json(self) -> dict[str, Any]:
        doc = {"method": self.method, "num_images": self.num_images, "dataset": self.dataset}
        return doc | ({"percentile": self.percentile} if self.percentile is not None else {})


@dataclass(frozen=True)
class DefenseSection:
    """What verify needs of a defense, typed; `fields` is the whole section its model kind wrote."""

    kind: str
    fields: dict[str, Any]

    @property
    def attack_output(self) -> str | None:
        return self.fields.get("attack_output")

    @property
    def member_output(self) -> str | None:
        return self.fields.get("member_output")

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.fields.get("members") or ())

    @property
    def majority(self) -> int | None:
        return self.fields.get("majority")

    @property
    def detector(self) -> dict[str, Any] | None:
        """A detector's score output and threshold, when the defense flags inputs."""
        has = "threshold" in self.fields and "score_output" in self.fields
        return (
            {"score_output": self.fields["score_output"], "threshold": float(self.fields["threshold"])} if has else None
        )


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    model: ModelSection
    input: InputSpec
    precision: PrecisionSection
    target: str
    calibration: CalibrationSection | None
    source: dict[str, Any]
    defense: DefenseSection | None
    transforms: dict[str, Any] | None
    tools: dict[str, str]
    seed: int
    files: dict[str, str]
    document: dict[str, Any]  # as read (migrated), for to_json and `info --json`

    @classmethod
    def from_json(cls, doc: Any, where: str) -> "Manifest":
        doc = migrate(validate(doc, where))
        model, precision, calibration, defense = (
            doc["model"],
            doc["precision"],
            doc.get("calibration"),
            doc.get("defense"),
        )
        batch = model.get("batch", "dynamic")
        return cls(
            schema_version=doc["schema_version"],
            model=ModelSection(
                model["file"],
                model.get("sha256"),
                None if batch == "dynamic" else batch,
                bool(model.get("stochastic", False)),
                model.get("opset"),
                model.get("exporter"),
                model.get("ir_version"),
                model.get("input_name"),
                model.get("output_name"),
            ),
            input=InputSpec.from_json(doc["input"]),
            precision=PrecisionSection(
                precision["mode"],
                tuple(precision.get("layers") or ()),
                precision.get("weight_rounding"),
                precision.get("fallback"),
                precision.get("int8_weights"),
            ),
            target=doc["target"],
            calibration=None
            if not calibration
            else CalibrationSection(
                calibration.get("method", "?"),
                calibration.get("num_images", 0),
                calibration.get("dataset"),
                calibration.get("percentile"),
            ),
            source=dict(doc.get("source") or {}),
            defense=DefenseSection(str(defense.get("kind", "?")), dict(defense)) if isinstance(defense, dict) else None,
            transforms=doc.get("transforms"),
            tools=dict(doc.get("tools") or {}),
            seed=doc["seed"],
            files=dict(doc.get("files") or {}),
            document=doc,
        )

    def to_json(self) -> dict[str, Any]:
        return self.document


def build_document(
    model: ModelSection,
    spec: InputSpec,
    precision: PrecisionSection,
    target: str,
    calibration: CalibrationSection | None,
    source: dict[str, Any],
    defense: dict[str, Any] | None,
    transforms: dict[str, Any] | None,
    seed: int,
) -> dict[str, Any]:
    """The manifest export writes, from the sections `Manifest.from_json` reads it into (`write_bundle` adds
    `files`). Model-kind sections (`source`, `defense`, `transforms`) are their kind's mappings."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": model.to_json(),
        "input": spec.to_json() | {"normalization_folded": spec.normalized},
        "precision": precision.to_json(),
        "target": target,
        "calibration": calibration.to_json() if calibration else None,
        "source": source,
        "defense": defense,
        "transforms": transforms,
        "tools": tool_versions(),
        "seed": seed,
    }
