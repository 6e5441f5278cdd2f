"""The one export -> self-check -> verify -> gates sequence, shared by `api`, `tune` and `demo`.

- `prepare`: the model as it will be exported: GDWS rewrite, then one defense (SAP or feature squeezing).
- `export_checked`: the precision export; `export_bundle` checks the graph against the loaded model on
  seeded inputs (its self-check) and writes the bundle atomically, so a failed check leaves no folder.
- `verify_engine`: verify on the bundle's engine with the attack plan its model kind needs (an EMPIR
  ensemble's majorities, a squeezing detector's score).
- `verify_gated`: that, plus the paired reference figures and the gates a user asked for.

Callers add only their own concerns: `api` loads files and writes the report, `tune` caches by content,
`demo` loops over precisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from deploy_robust import gates
from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.defenses.sap import apply_sap
from deploy_robust.defenses.squeeze import apply_squeezing
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.ingest.kinds import attack_plan_for
from deploy_robust.transforms.gdws.network import GDWSPlan
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
from deploy_robust.verify import ThreatModel, VerifyOptions, run_verify
from deploy_robust.verify.protocol import reference_robust_accuracy


@dataclass(frozen=True)
class SAPOptions:
    layers: tuple[str, ...] | None = None  # module names to prune after; None: every activation module
    fraction: float = 1.0  # draws per layer as a fraction of its units, in (0, 16]
    seed: int | None = None  # seeded, repeatable masks (for tests; not a defense)

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 16:
            raise UserError(f"--sap-fraction must be in (0, 16]; got {self.fraction:g}")


@dataclass(frozen=True)
class SqueezeOptions:
    squeezers: str  # e.g. "bits:5,median:2"
    mode: str = "squeeze"  # or "detect": a squeeze_score output with a threshold set on calib
    fpr: float = 0.05  # detect mode: false-positive rate on the clean calibration images


@dataclass(frozen=True)
class Transforms:
    """What is done to the model before its precision export, in this order."""

    gdws: GDWSRequest | None = None
    sap: SAPOptions | None = None
    squeeze: SqueezeOptions | None = None

    def __post_init__(self) -> None:
        if self.sap is not None and self.squeeze is not None:
            raise UserError("--squeeze and --sap together are not supported; export one defense at a time")


def prepare(
    loaded: LoadedModel,
    transforms: Transforms,
    options: ExportOptions,
    calib: Dataset | None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[LoadedModel, GDWSPlan | None]:
    """The model to export: rewritten by GDWS where asked, then wrapped in its defense."""
    plan = None
    if transforms.gdws is not None:
        loaded, plan = rewrite_model(loaded, transforms.gdws, log)
    sap, squeeze = transforms.sap, transforms.squeeze
    if sap is not None:
        loaded = apply_sap(loaded, list(sap.layers) if sap.layers else None, sap.fraction, sap.seed)
    if squeeze is not None:
        if squeeze.mode == "detect" and options.precision != "fp32":
            raise UserError("--squeeze-mode detect exports at --precision fp32 (its score output is float)")
        loaded = apply_squeezing(loaded, squeeze.squeezers, squeeze.mode, calib, squeeze.fpr)
    return loaded, plan


def export_checked(loaded: LoadedModel, out: str | Path, options: ExportOptions, calib: Dataset | None) -> Bundle:
    """The bundle at `out`: exported, self-checked against `loaded`, written atomically (or not at all)."""
    return export_bundle(loaded, out, options, calib=calib)


def verify_engine(
    bundle: Bundle,
    data: Dataset,
    threat: ThreatModel,
    options: VerifyOptions,
    reference: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """verify.json's document for `bundle`, attacked with the plan its model kind needs."""
    return run_verify(bundle, data, threat, options, reference=reference, defense_plan=attack_plan_for(bundle.manifest))


@dataclass(frozen=True)
class VerifyGates:
    """The pass/fail thresholds of a verify; the last two compare with the float reference."""

    min_clean_acc: float | None = None
    min_robust_acc: float | None = None
    max_robust_drop: float | None = None
    min_agreement: float | None = None

    @property
    def need_reference(self) -> bool:
        return self.max_robust_drop is not None or self.min_agreement is not None


def verify_gated(
    bundle: Bundle,
    data: Dataset,
    threat: ThreatModel,
    options: VerifyOptions,
    reference: torch.nn.Module | None,
    thresholds: VerifyGates,
) -> dict[str, Any]:
    """`verify_engine`, the reference's robust accuracy under the same white-box attacks on the same points
    (the paired delta) where a reference is given, and the gates evaluated into the document's `gates`."""
    if thresholds.need_reference and reference is None:
        raise UserError("--max-robust-drop and --min-agreement need --reference")
    doc = verify_engine(bundle, data, threat, options, reference)
    values = {"clean_accuracy": doc["clean_accuracy"], "robust_accuracy": doc["robust_accuracy"]}
    if reference is not None:
        value = reference_robust_accuracy(
            reference,
            data,
            threat,
            n=options.n,
            suite=options.suite,
            batch_size=options.batch_size,
            seed=options.seed,
        )
        doc["reference_robust_accuracy"] = value
        doc["robust_delta_vs_reference"] = doc["robust_accuracy"] - value
        values["robust_drop_vs_reference"] = -doc["robust_delta_vs_reference"]
        values["top1_agreement_with_reference"] = doc["models"]["R"]["top1_agreement_with_E"]
    doc["gates"] = gates.evaluate_all(
        gates.minimum("clean_accuracy", thresholds.min_clean_acc, "--min-clean-acc")
        + gates.minimum("robust_accuracy", thresholds.min_robust_acc, "--min-robust-acc")
        + gates.maximum("robust_drop_vs_reference", thresholds.max_robust_drop, "--max-robust-drop")
        + gates.minimum("top1_agreement_with_reference", thresholds.min_agreement, "--min-agreement"),
        values,
    )
    return doc
