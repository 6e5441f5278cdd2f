"""Shared by the benchmark scripts: machine info (from deploy_robust.bench) and writing results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deploy_robust.bench.machine import machine_info

__all__ = ["machine_info", "save_result"]


def save_result(name: str, results, script: str | None = None, **extra) -> Path:
    """Write benchmarks/results/NAME.json: the results with the command that made them (benchmarks/SCRIPT.py,
    by default NAME) and the machine."""
    doc = {
        "benchmark": name,
        "command": " ".join(["python", f"benchmarks/{script or name}.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "results": results,
        **extra,
    }
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return out
