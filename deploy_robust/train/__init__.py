"""Training: plain and adversarial (FGSM with random start) classifier training on one loop."""

from deploy_robust.train.adversarial import fgsm_random_start
from deploy_robust.train.classifier import crop_and_flip, train_classifier

__all__ = ["crop_and_flip", "fgsm_random_start", "train_classifier"]
