"""PyTorch backend: runs an nn.Module (the reference model, or a bundle's graph rebuilt in torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy_robust.bundle import Bundle
from deploy_robust.errors import UserError
from deploy_robust.quant.twin import twin_module
from deploy_robust.runtimes.base import Runner, RuntimeOptions


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

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.module(torch.from_numpy(x).to(self.device))
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.float().cpu().numpy() if o.is_floating_point() else o.cpu().numpy() for o in outputs]

    # GPU-only timing hooks used by `bench` (CUDA events; transfers separate from compute).
    def phases(self, x: np.ndarray) -> dict[str, float] | None:
        if self.device.type != "cuda":
            return None
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        host = torch.from_numpy(x).pin_memory()
        with torch.no_grad():
            events[0].record()
            x_dev = host.to(self.device, non_blocking=True)
            events[1].record()
            out = self.module(x_dev)
            events[2].record()
            out.float().cpu()
            events[3].record()
        torch.cuda.synchronize()
        return {
            "h2d": events[0].elapsed_time(events[1]),
            "compute": events[1].elapsed_time(events[2]),
            "d2h": events[2].elapsed_time(events[3]),
        }

    def reset_device_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def device_peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None


def bundle_as_torch(bundle: Bundle) -> nn.Module:
    """The bundle's ONNX graph (Q/DQ included) as a torch module, computing in the precisions the graph states."""
    return twin_module(bundle.model_path, float_dtype=None, all_outputs=True)


def runner_for(
    backend: str, bundle: Bundle | None, *, module: nn.Module | None = None, options: RuntimeOptions = RuntimeOptions()
) -> TorchRunner:
    """`module` if given, else the bundle's graph rebuilt in torch (torch keeps its own thread setting)."""
    module = module if module is not None else bundle_as_torch(bundle)
    return TorchRunner(
        module,
        "cuda" if backend == "torch-cuda" else "cpu",
        fixed_batch=bundle.fixed_batch if bundle is not None else None,
    )
