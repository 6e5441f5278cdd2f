"""Defenses that export into one engine and are verified adaptively: EMPIR ensembles,
Stochastic Activation Pruning and feature squeezing (one module each)."""

from deploy_robust.bundle import Manifest
from deploy_robust.defenses.empir import Ensemble, build_ensemble
from deploy_robust.defenses.sap import StochasticActivationPruning, add_sap, apply_sap
from deploy_robust.defenses.squeeze import SqueezeDetector, Squeezed, apply_squeezing

__all__ = ["describe_defense", "Ensemble", "SqueezeDetector", "Squeezed", "StochasticActivationPruning", "add_sap", "apply_sap",
           "apply_squeezing", "build_ensemble"]


def describe_defense(manifest: Manifest) -> str:
    """One line on the defense a bundle's manifest records (for export and info)."""
    d = manifest.defense.fields
    if d["kind"] == "feature_squeezing":
        threshold = f"; flags inputs with score > {d['threshold']:.4g} (FPR {d['target_fpr']:g})" if "threshold" in d else ""
        return f"feature squeezing ({d['mode']}): {', '.join(d['squeezers'])}{threshold}"
    if d["kind"] == "empir":
        surrogate = f"; attacks use {d['attack_output']}" if d.get("attack_output") else ""
        return f"EMPIR ensemble {', '.join(d['members'])} ({d['combine']}){surrogate}"
    random = "stochastic engine: verify scores it over 20 runs" if manifest.model.stochastic else "repeatable"
    return f"{d['kind']} ({d['mode']}) after {', '.join(l['layer'] for l in d['layers'])}; {random}"
