"""Defensive Quantization fine-tuning: fake-quantized training with the Lipschitz regularizer.

beta = 0 is vanilla quantization-aware training; epochs = 0 is post-training quantization at
the same bit widths (bounds calibrated, no training). All three export the same way, so the
baselines differ only in what the issue compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deploy_robust.data import Dataset
from deploy_robust.model import LoadedModel
from deploy_robust.normalize import normalizer
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier
from deploy_robust.train.adversarial import Perturb
from deploy_robust.transforms.dq.model import DQConfig, prepare_dq
from deploy_robust.transforms.dq.regularizer import lipschitz_penalty, spectral_norms


@dataclass
class DQRequest:
    w_bits: int
    a_bits: int
    beta: float = 3e-4
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 128
    calib_n: int = 512
    perturb: Perturb | None = None
    seed: int = 0
    input_signed: bool = False
    device: str = "cpu"


def defensive_quantization(loaded: LoadedModel, train: Dataset, request: DQRequest) -> tuple[nn.Module, DQConfig, dict]:
    """(DQ module, its config, a report with the loss curve and per-layer spectral norms before/after)."""
    seed_everything(request.seed)
    calibration = torch.from_numpy(train.take(request.calib_n).as_float())
    module, config = prepare_dq(
        loaded.module,
        request.w_bits,
        request.a_bits,
        calibration,
        loaded.spec.mean,
        loaded.spec.std,
        request.input_signed,
    )
    before = spectral_norms(module)
    losses: list[float] = []
    if request.epochs > 0:
        penalty = (lambda m: lipschitz_penalty(m, request.beta)) if request.beta > 0 else None
        module.to(request.device)
        losses = train_classifier(
            module,
            train,
            epochs=request.epochs,
            batch_size=request.batch_size,
            lr=request.lr,
            seed=request.seed,
            input_transform=normalizer(loaded.spec),
            perturb=request.perturb,
            penalty=penalty,
        )
    module.cpu().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    after = spectral_norms(module)
    report = {
        "losses": [round(v, 5) for v in losses],
        "spectral_norms": {name: {"before": round(before[name], 4), "after": round(after[name], 4)} for name in before},
    }
    return module, config, report
