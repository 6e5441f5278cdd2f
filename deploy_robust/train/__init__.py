"""Training: plain, adversarial (PGD, FGSM with random start) and regularized, on one loop."""

from deploy_robust.train.adversarial import fgsm_random_start, make_perturb, pgd_training
from deploy_robust.train.classifier import crop_and_flip, train_classifier

__all__ = ["crop_and_flip", "fgsm_random_start", "make_perturb", "pgd_training", "train_classifier"]
