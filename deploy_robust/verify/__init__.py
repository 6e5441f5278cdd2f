"""Verify the artifact that ships: fidelity and adversarial robustness under adaptive attacks."""

from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.protocol import SUITES, run_verify
from deploy_robust.verify.threat import ThreatModel, parse_eps

__all__ = ["SUITES", "ThreatModel", "VerifyOptions", "parse_eps", "run_verify"]
