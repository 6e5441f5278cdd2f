"""deploy-robust: deploy adversarially robust image classifiers, and verify they stay robust."""

__version__ = "0.1.0"
