"""CI gates: a threshold on one named metric of a result, evaluated the same way for every verb.

A gate reads `values[name]`; its record (`to_json`) is what `eval` and `verify` put in their
JSON documents, and `failure_message` is the one line a failing run exits 1 with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy_robust.errors import UserError


@dataclass(frozen=True)
class Gate:
    name: str  # the metric, e.g. "robust_accuracy"
    op: str  # ">=" (a minimum) or "<=" (a maximum)
    threshold: float
    flag: str = ""  # the command-line flag that set it, for messages

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"gate op must be >= or <=; got {self.op}")

    def evaluate(self, values: dict[str, float]) -> dict[str, Any]:
        if values.get(self.name) is None:
            raise UserError(f"{self.flag or self.name} cannot be checked: this run has no {self.name}")
        value = float(values[self.name])
        passed = value >= self.threshold if self.op == ">=" else value <= self.threshold
        return {"name": self.name, "value": value, "op": self.op, "threshold": self.threshold, "passed": bool(passed)}


def minimum(name: str, threshold: float | None, flag: str = "") -> list[Gate]:
    return [] if threshold is None else [Gate(name, ">=", float(threshold), flag)]


def maximum(name: str, threshold: float | None, flag: str = "") -> list[Gate]:
    return [] if threshold is None else [Gate(name, "<=", float(threshold), flag)]


def evaluate_all(gates: list[Gate], values: dict[str, float]) -> list[dict[str, Any]]:
    return [gate.evaluate(values) for gate in gates]


def failure_message(results: list[dict[str, Any]]) -> str | None:
    """One line naming every failed gate, or None when all passed."""
    failed = [g for g in results if not g["passed"]]
    if not failed:
        return None
    return "; ".join(f"{g['name']} {g['value']:.4f} {g['op']} {g['threshold']:g} fails" for g in failed)
