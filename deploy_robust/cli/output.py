"""Printing results: JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence


ENVELOPE_VERSION = 1


def envelope(command: str, doc: Any) -> dict[str, Any]:
    """Every verb's --json document in one shape (docs/reference.md, "JSON output"): `schema` (deploy-robust/<command>, or
    the document's own), `schema_version`, `command`, `bundle` ({path, precision, target} or null), `data`
    ({name, n} or null), `flags` and `gates` (lists), `error` (null, or {message, exit_code}); the verb's own
    fields beside them. A list result goes under `results`."""
    body = {"results": doc} if isinstance(doc, list) else dict(doc)
    bundle = body.get("bundle")
    if isinstance(bundle, str):
        manifest = body.get("manifest") or {}
        bundle = {
            "path": bundle,
            "precision": body.pop("precision", None) or manifest.get("precision", {}).get("mode"),
            "target": manifest.get("target"),
        }
    data = body.get("data")
    if "dataset" in body and not isinstance(data, dict):
        data = {"name": body.pop("dataset"), "n": body.get("n")}
    return body | {
        "schema": body.get("schema", f"deploy-robust/{command}"),
        "schema_version": body.get("schema_version", ENVELOPE_VERSION),
        "command": command,
        "bundle": bundle,
        "data": data if isinstance(data, dict) else None,
        "flags": body.get("flags", []),
        "gates": body.get("gates", []),
        "error": None,
    }


def emit_json(doc: Any, command: str) -> None:
    json.dump(envelope(command, doc), sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def emit_error(command: str, message: str, exit_code: int) -> None:
    """The --json document of a run that failed: the same envelope, `error` filled, nothing else."""
    doc = {
        "schema": f"deploy-robust/{command}",
        "schema_version": ENVELOPE_VERSION,
        "command": command,
        "bundle": None,
        "data": None,
        "flags": [],
        "gates": [],
        "error": {"message": message, "exit_code": exit_code},
    }
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def ci(interval: Sequence[float]) -> str:
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return str(num_bytes)
