"""PyTorch backend: runs an nn.Module (the reference model, or a bundle's graph rebuilt in torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import Runner


class TorchRunner(Runner):
    def __init__(self, module: nn.Module, device: str = "cpu", fixed_batch: int | None = None) -> None:
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("backend torch-cuda needs a CUDA GPU and a CUDA build of torch")
        self.module = module.eval()
        self.device = torch.device(device)
        self.fixed_batch = fixed_batch
        self.name = "torch" if device == "cpu" else f"torch-{device}"

    def activate(self) -> None:
        self.module.to(self.device)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.module(torch.from_numpy(x).to(self.device))
        return out.float().cpu().numpy()
