"""Defenses that export into one engine: Stochastic Activation Pruning (and, to come, EMPIR and feature squeezing)."""

from deploy_robust.defenses.sap import StochasticActivationPruning, add_sap

__all__ = ["StochasticActivationPruning", "add_sap"]
