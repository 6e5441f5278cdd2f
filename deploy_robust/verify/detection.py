"""Verify a detector bundle (feature squeezing in detect mode): what it catches, and what gets past it.

A detector bundle has a second output, a score, and flags inputs scoring above the threshold
in its manifest. Two attacks, both on the twin S (squeezers straight-through: BPDA) and
scored on the engine E:

- unaware: APGD-CE on the classifier alone; reports how many of its successful adversarial
  examples the detector flags (the detection rate the defense's paper reports);
- aware: PGD on min(margin, kappa) - lambda * relu(score - 0.8 * threshold) for several lambda,
  which asks for a misclassification that stays under the threshold (Carlini and Wagner 2017).

A point counts as robust against the detector-aware adversary when E is right on it clean
and no candidate from either attack is both misclassified and unflagged by E.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.quant.twin import attack_graph
from deploy_robust.runtimes import create_runner
from deploy_robust.stats import wilson_interval
from deploy_robust.verify import attacks
from deploy_robust.verify.threat import ThreatModel

WEIGHTS = (1.0, 10.0, 100.0)   # lambda: how hard the aware attack pushes the score down
KAPPA = 5.0                    # margin beyond which misclassifying harder gains nothing


def detector_of(bundle: Bundle) -> dict[str, Any] | None:
    """The detector's score output and threshold, if the bundle's defense flags inputs."""
    return bundle.manifest.defense.detector if bundle.manifest.defense else None


def _aware_pgd(twin, x, y, threat: ThreatModel, threshold: float, weight: float, steps: int, seed: int):
    """PGD toward misclassified-and-unflagged; keeps, per example, the first such point (on S)."""
    generator = torch.Generator().manual_seed(seed)
    x_adv = threat.random_start(x, generator)
    best, done = x_adv.clone(), torch.zeros(len(x), dtype=torch.bool)
    step = 2.5 * threat.eps / steps
    for _ in range(steps):
        x_var = x_adv.detach().requires_grad_(True)
        logits, score = twin(x_var)
        margin = attacks.margin_loss(logits, y)
        objective = margin.clamp(max=KAPPA) - weight * torch.relu(score - 0.8 * threshold)
        grad, = torch.autograd.grad(objective.sum(), x_var)
        success = (margin > 0) & (score <= threshold) & ~done
        best[success], done = x_adv[success].detach(), done | success
        x_adv = threat.project(x_adv.detach() + threat.step(grad, step), x)
    best[~done] = x_adv[~done]
    return best


def verify_detector(bundle: Bundle, data: Dataset, threat: ThreatModel, *, batch_size: int = 128, steps: int = 50,
                    seed: int = 0, engine=None, twin: torch.nn.Module | None = None) -> dict[str, Any]:
    """Both attacks on every point of `data`. `engine` (an ONNX Runtime runner) and `twin` (the
    graph returning all its outputs) are reused from the verify run when given."""
    detector = detector_of(bundle)
    threshold = float(detector["threshold"])
    if engine is None:  # every runner returns every output: the score comes from the engine that ships
        engine = create_runner("ort-cpu", bundle)
    if twin is None:
        twin = attack_graph(bundle.model_path)
        for p in twin.parameters():
            p.requires_grad_(False)
    classifier = lambda x: twin(x)[0]  # noqa: E731
    clean_ok, clean_flag, unaware_fooled, unaware_flagged, unaware_robust, robust = [], [], [], [], [], []
    for index, (x_np, y_np) in enumerate(data.batches(batch_size)):
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        logits, score = engine.infer_outputs(x_np)
        ok = logits.argmax(1) == y_np
        clean_ok.append(ok)
        clean_flag.append(score > threshold)
        gets_past = np.zeros(len(y_np), dtype=bool)   # misclassified and unflagged by E, by some candidate
        unaware = attacks.apgd(classifier, x, y, threat, steps=steps, seed=seed + index).numpy()
        logits, score = engine.infer_outputs(unaware)
        fooled = ok & (logits.argmax(1) != y_np)
        unaware_fooled.append(fooled)
        unaware_flagged.append(fooled & (score > threshold))
        gets_past |= fooled & (score <= threshold)
        unaware_robust.append(ok & ~gets_past)
        for weight in WEIGHTS:
            aware = _aware_pgd(twin, x, y, threat, threshold, weight, steps, seed + 1000 * index + int(weight)).numpy()
            logits, score = engine.infer_outputs(aware)
            gets_past |= ok & (logits.argmax(1) != y_np) & (score <= threshold)
        robust.append(ok & ~gets_past)
    clean_ok, clean_flag = np.concatenate(clean_ok), np.concatenate(clean_flag)
    fooled, flagged, robust = np.concatenate(unaware_fooled), np.concatenate(unaware_flagged), np.concatenate(robust)
    lo, hi = wilson_interval(int(robust.sum()), len(robust))
    return {
        "threshold": threshold, "target_fpr": detector.get("target_fpr"),
        "false_positive_rate_on_test": float(clean_flag.mean()),
        "unaware_attack": {"attack": f"APGD-CE {steps} steps on the classifier (BPDA through squeezers)",
                           "fooled": float(fooled.mean()),
                           "detection_rate": float(flagged.sum() / max(fooled.sum(), 1)),
                           "robust_accuracy_ignoring_detector": float((clean_ok & ~fooled).mean()),
                           "robust_accuracy_with_detector": float(np.concatenate(unaware_robust).mean())},
        "aware_attack": {"attack": f"PGD {steps} steps on min(margin, {KAPPA:g}) - lambda * relu(score - 0.8 threshold), "
                                   f"lambda in {list(WEIGHTS)}"},
        "robust_accuracy_detector_aware": float(robust.mean()), "robust_accuracy_detector_aware_ci95": [lo, hi],
        "definition": "E right on the clean input, and no candidate of either attack both misclassified and "
                      "scored at or under the threshold by E",
    }
