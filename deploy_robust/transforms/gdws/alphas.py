"""Robustness-aware channel weights alpha_c for GDWS (the paper's noise gains, its eq. 8).

alpha_c estimates how much noise in input channel c's filters moves the classification
margin at adversarial points: for each image, perturbed by PGD inside the threat model, with
top class t and logits z, and for every other class j,

    alpha_c += sum_j || d(z_t - z_j) / dW_c ||_F^2 / (2 (z_t - z_j)^2 M K^2),

averaged over the images. Channels whose filters the margin is sensitive to get a large
alpha and keep more GDWS filters. The model is evaluated in eval mode (BatchNorm uses its
running statistics: the network that will be deployed).

Estimates are cached as JSON with their settings and a hash of the layer weights they were
computed on, so a cache can never be applied to other weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.progress import progress
from deploy_robust.verify.attacks import pgd
from deploy_robust.verify.threat import ThreatModel

CACHE_FORMAT = "deploy-robust-gdws-alphas"


@dataclass(frozen=True)
class AlphaSettings:
    eps: float = 2 / 255
    norm: str = "linf"
    steps: int = 10
    n: int = 128
    seed: int = 0


def weights_hash(convs: dict[str, nn.Conv2d]) -> str:
    digest = hashlib.sha256()
    for name in sorted(convs):
        digest.update(name.encode())
        digest.update(convs[name].weight.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def estimate_alphas(
    classifier: nn.Module, convs: dict[str, nn.Conv2d], data: Dataset, settings: AlphaSettings = AlphaSettings()
) -> dict[str, np.ndarray]:
    """alpha (C,) for each conv in `convs`; `classifier` takes [0, 1] images and contains the convs."""
    if len(data) < settings.n:
        raise UserError(f"GDWS alphas: {data.name} has {len(data)} images; {settings.n} asked (--alpha-n)")
    data = data.take(settings.n)
    threat = ThreatModel(settings.norm, settings.eps)
    weights = {name: conv.weight for name, conv in convs.items()}
    flags = {name: w.requires_grad for name, w in weights.items()}
    was_training = classifier.training
    classifier.eval()
    totals = {name: torch.zeros(conv.in_channels, dtype=torch.float64) for name, conv in convs.items()}
    try:
        for w in weights.values():
            w.requires_grad_(False)
        adversarial = []
        for start, (x, y) in enumerate(data.batches(64)):
            x, y = torch.from_numpy(x), torch.from_numpy(y)
            adversarial.append(
                pgd(classifier, x, y, threat, steps=settings.steps, seed=settings.seed + start)
                if settings.eps > 0 and settings.steps > 0
                else x
            )
        images = torch.cat(adversarial)
        for w in weights.values():
            w.requires_grad_(True)
        names = list(weights)
        for image in progress(images, total=len(images), desc="gdws alphas"):
            logits = classifier(image[None])[0]
            top = int(logits.argmax())
            others = [j for j in range(len(logits)) if j != top]
            margins = logits[top] - logits[others]
            rows = torch.eye(len(others), dtype=margins.dtype)
            grads = torch.autograd.grad(margins, [weights[n] for n in names], grad_outputs=rows, is_grads_batched=True)
            denominator = 2 * margins.detach().double().pow(2).clamp_min(1e-12)
            for name, grad in zip(names, grads):  # grad: (classes - 1, M, C, Kh, Kw)
                m, _, kh, kw = weights[name].shape
                per_channel = grad.double().pow(2).sum(dim=(1, 3, 4))  # (classes - 1, C)
                totals[name] += (per_channel / (denominator[:, None] * m * kh * kw)).sum(0)
    finally:
        for name, w in weights.items():
            w.requires_grad_(flags[name])
        classifier.train(was_training)
    return {name: (total / len(images)).numpy() for name, total in totals.items()}


def save_alphas(
    path: str | Path, alphas: dict[str, np.ndarray], settings: AlphaSettings, weights_sha256: str, data_name: str
) -> None:
    doc = {
        "format": CACHE_FORMAT,
        "version": 1,
        "weights_sha256": weights_sha256,
        "data": data_name,
        "settings": asdict(settings),
        "alphas": {k: [float(v) for v in a] for k, a in sorted(alphas.items())},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, json.dumps(doc, indent=1))


def load_alphas(path: str | Path, weights_sha256: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(alphas, info) from a cache written by `save_alphas`; refuses one computed on other weights."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable GDWS alphas file: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        raise UserError(f"{path}: not a GDWS alphas file (written by deploy-robust gdws --alphas)")
    if doc.get("weights_sha256") != weights_sha256:
        raise UserError(
            f"{path}: these alphas were computed on other weights; delete the file or pass another --alphas"
        )
    alphas = {k: np.asarray(v, np.float64) for k, v in doc["alphas"].items()}
    return alphas, alpha_info(doc["settings"], doc["data"], path.name)


def alpha_info(settings: dict[str, Any], data_name: str, cache: str | None = None) -> dict[str, Any]:
    return {
        "method": "noise gain at PGD points (GDWS eq. 8)",
        "data": data_name,
        **settings,
        **({"cache": cache} if cache else {}),
    }
