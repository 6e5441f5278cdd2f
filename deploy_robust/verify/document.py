"""The verify result document (verify.json): per-attack and per-example worst-case figures with their
confidence intervals, from the merged per-batch results of a run.

The attacks cascade (verify.suites), so each attack's `robust_accuracy` is what is left robust after it and
every attack before it (AutoAttack's "robust accuracy after" column), `broke` how many points it broke that
the earlier ones left robust, and `points_attacked` how many it ran on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.errors import UserError
from deploy_robust.stats import wilson_interval
from deploy_robust.verify.cost import describe as describe_passes
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.suites import Randomness

SCHEMA = "deploy-robust/verify"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class VerifySummary:
    """What other commands read from a verify.json: the setting it was made under and its headline figures."""

    norm: str
    eps: float
    threat: str              # the threat model as described in the report
    data: str
    n: int
    suite: str
    clean_accuracy: float
    robust_accuracy: float
    robust_ci95: tuple[float, float]

    @property
    def setting(self) -> tuple:
        """Two summaries whose figures share an axis have the same setting."""
        return self.norm, self.eps, self.n, self.data, self.suite

    @classmethod
    def read(cls, path: Path) -> "VerifySummary":
        """The summary of the verify.json at `path`; a malformed or foreign file is one UserError."""
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema is {doc.get('schema')!r}, not {SCHEMA}")
            threat, data = doc["threat_model"], doc["data"]
            lo, hi = doc["robust_accuracy_ci95"]
            return cls(str(threat["norm"]), float(threat["eps"]), str(threat["description"]), str(data["name"]),
                       int(data["n"]), str(doc["suite"]), float(doc["clean_accuracy"]), float(doc["robust_accuracy"]),
                       (float(lo), float(hi)))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            raise UserError(f"{path}: not a verify.json deploy-robust reads ({type(e).__name__}: {e})") from None


def result_document(bundle, data, threat, *, options: VerifyOptions, plan, merged: dict[str, np.ndarray],
                    randomness: Randomness, zero_grad: int, seconds: float) -> dict[str, Any]:
    labels = data.labels
    n = len(labels)
    e_pred = merged["e_clean_pred"]                      # [passes, n]
    clean_ok = e_pred == labels
    per_attack, robust_pass, white_box_pass = _cascade(plan, merged, clean_ok, randomness)
    robust = robust_pass.all(0)
    lo, hi = wilson_interval(int(robust.sum()), n)
    clean_lo, clean_hi = wilson_interval(int(clean_ok[0].sum()), n)
    s_pred = merged["s_clean_pred"]
    s_agree = merged["s_agree_on_adversarial"]
    doc = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "bundle": {"path": str(bundle.path), "precision": bundle.precision, "target": bundle.manifest.target},
        "threat_model": {"norm": threat.norm, "eps": threat.eps, "description": threat.describe()},
        "data": {"name": data.name, "n": n, "selection": f"first {n}"}, "suite": options.suite, "seed": options.seed,
        "engine": options.backend,
        "clean_accuracy": float(clean_ok.mean()), "clean_accuracy_ci95": [clean_lo, clean_hi],
        "robust_accuracy": float(robust.mean()), "robust_accuracy_ci95": [lo, hi],
        "robust_accuracy_gradient_attacks_only": float(white_box_pass.all(0).mean()),
        "models": {"E": {"clean_accuracy": float(clean_ok.mean())},
                   "S": {"clean_accuracy": float((s_pred == labels).mean()),
                         "top1_agreement_with_E": float((s_pred == e_pred[0]).mean())}},
        "attacks": per_attack,
        "attacks_definition": "in order, each on the points every earlier attack left robust; robust_accuracy: "
                              "robust after this attack and all before it",
        "gradients_on_S": "straight-through through quantizers and rounding (STE/BPDA)",
        "agreement_E_S_on_S_adversarial": float(s_agree.mean()) if s_agree.size else None,
        "zero_gradient_points_on_S": zero_grad,
        "stochastic_engine": {"stochastic": randomness.passes > 1 or not np.all(e_pred == e_pred[0]),
                              "scoring_passes": randomness.passes, "eot_draws": randomness.eot,
                              "square_score_draws": randomness.square_draws,
                              "stable_prediction_fraction": float(np.all(e_pred == e_pred[0], axis=0).mean())},
        "seconds": round(seconds, 2),
        # per point, in data order: E right clean (first pass) and robust (the worst case), as "0"/"1" strings
        "per_example": {"clean": bits(clean_ok[0]), "robust": bits(robust)},
    }
    if randomness.passes > 1:
        # Headline: worst case over the scoring passes; beside it what one run of E gets on average.
        doc["robust_accuracy_definition"] = (f"robust in all {randomness.passes} scoring passes of the stochastic "
                                             "engine, on every candidate of every attack")
        doc["expected_robust_accuracy"] = float(robust_pass.mean())
        doc["clean_accuracy_definition"] = f"mean over {randomness.passes} scoring passes"
        doc["clean_accuracy_worst_case"] = float(clean_ok.all(0).mean())
    if "r_clean_pred" in merged:
        r_pred = merged["r_clean_pred"]
        doc["models"]["R"] = {"clean_accuracy": float((r_pred == labels).mean()),
                              "top1_agreement_with_E": float((r_pred == e_pred[0]).mean())}
    return doc


def _cascade(plan, merged: dict[str, np.ndarray], clean_ok: np.ndarray, randomness: Randomness):
    """Each attack's entry, and per scoring pass the points still robust after all of them (and after the gradient
    attacks on S and R alone): robust means right clean and on every candidate of every attack so far."""
    robust_pass = clean_ok.copy()
    white_box_pass = clean_ok.copy()
    per_attack = []
    for attack in plan:
        ok = merged[f"attack:{attack.name}"]
        before = robust_pass.all(0)
        robust_pass &= ok
        if attack.on != "E":
            white_box_pass &= ok
        entry = {"attack": attack.name, "on": attack.on, "params": attack.params,
                 "robust_accuracy": float(robust_pass.all(0).mean()),
                 "broke": int((before & ~robust_pass.all(0)).sum())}
        if f"attacked:{attack.name}" in merged:
            entry["points_attacked"] = int(merged[f"attacked:{attack.name}"].sum())
        if f"seconds:{attack.name}" in merged:  # wall time, scoring on E included (summed over processes)
            entry["seconds"] = round(float(merged[f"seconds:{attack.name}"].sum()), 2)
        if f"passes:{attack.name}" in merged:   # images through S (with and without gradient) and E, summed
            entry["passes"] = describe_passes(merged[f"passes:{attack.name}"].reshape(-1, 3).sum(0))
        if randomness.passes > 1:
            entry["expected_robust_accuracy"] = float(robust_pass.mean())
        per_attack.append(entry)
    return per_attack, robust_pass, white_box_pass


def bits(values: np.ndarray) -> str:
    """Per-point outcomes as verify.json stores them: "1" where True, "0" where False, in data order."""
    return "".join("1" if v else "0" for v in values)


def per_example(doc: dict[str, Any], field: str) -> np.ndarray:
    """A verify document's per-point outcomes (`field`: "clean" or "robust") as booleans, in data order."""
    return np.frombuffer(doc["per_example"][field].encode(), dtype=np.uint8) == ord("1")
