"""Defenses that export into one engine and are verified adaptively: EMPIR ensembles,
Stochastic Activation Pruning and feature squeezing (one module each)."""

from deploy_robust.defenses.empir import Ensemble, build_ensemble
from deploy_robust.defenses.sap import StochasticActivationPruning, add_sap, apply_sap
from deploy_robust.defenses.squeeze import SqueezeDetector, Squeezed, apply_squeezing

__all__ = [
    "Ensemble",
    "SqueezeDetector",
    "Squeezed",
    "StochasticActivationPruning",
    "add_sap",
    "apply_sap",
    "apply_squeezing",
    "build_ensemble",
]
