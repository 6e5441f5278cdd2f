"""Clean accuracy of any runner on a dataset, and how closely two runners agree (knows no backend)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.progress import progress
from deploy_robust.runtimes.base import Runner
from deploy_robust.stats import wilson_interval


@dataclass
class Evaluation:
    n: int
    correct: int
    logits: np.ndarray

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def to_json(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.correct, self.n)
        return {"n": self.n, "correct": self.correct, "accuracy": self.accuracy, "accuracy_ci95": [lo, hi]}


@dataclass
class Agreement:
    """Top-1 agreement and logit differences between two runners on the same inputs."""

    n: int
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "top1_agreement": self.top1_agreement,
            "max_abs_logit_diff": self.max_abs_diff,
            "mean_abs_logit_diff": self.mean_abs_diff,
        }


def predict(runner: Runner, dataset: Dataset, batch_size: int = 256, desc: str = "") -> np.ndarray:
    """Logits of `runner` on every image of `dataset`, in order."""
    runner.activate()
    batches = progress(
        dataset.batches(batch_size), total=math.ceil(len(dataset) / batch_size), desc=desc or runner.name
    )
    return np.concatenate([runner.infer(x) for x, _ in batches])


def evaluate(runner: Runner, dataset: Dataset, batch_size: int = 256) -> Evaluation:
    logits = predict(runner, dataset, batch_size)
    if logits.shape[1] < dataset.num_classes:
        raise UserError(
            f"{dataset.name} has labels up to {dataset.num_classes - 1} but the model has only "
            f"{logits.shape[1]} classes"
        )
    correct = int((logits.argmax(1) == dataset.labels).sum())
    return Evaluation(len(dataset), correct, logits)


def compare_logits(a: np.ndarray, b: np.ndarray) -> Agreement:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return Agreement(len(a), float((a.argmax(1) == b.argmax(1)).mean()), float(diff.max()), float(diff.mean()))
