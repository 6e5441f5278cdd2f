"""Training: plain classifier training now; PGD/FGSM adversarial training builds on the same loop."""

from deploy_robust.train.classifier import train_classifier

__all__ = ["train_classifier"]
