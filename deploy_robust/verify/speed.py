"""Make a model fast to attack: no weight gradients, and the faster memory layout and precision for this machine.

Attacks need gradients with respect to the input only. Freezing the weights lets autograd
skip every weight-gradient kernel (the backward of a conv then computes one product, not
two). Channels-last (NHWC) layout makes oneDNN's convolutions markedly faster for wide conv
nets (ResNet-18: about 1.4x per PGD step on this AVX2 CPU) and slightly slower for tiny
ones, so the layout is chosen by timing one gradient step of each on the real batch. On CPUs with native
bfloat16 (AVX512_BF16, AMX) gradients under bf16 autocast are faster again (ResNet-18 on an AMD EPYC with
AVX512_BF16: see docs/verify.md); "auto" takes it where the CPU has it natively and the caller allows it.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from deploy_robust.cpu import cpu_flags

TorchModel = Callable[[torch.Tensor], torch.Tensor]
_MIN_GAIN = 1.1  # switch layout only for a clear win: the probe itself is noisy


def _step_seconds(model: TorchModel, x: torch.Tensor, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms oneDNN's kernel cache
        x_var = x.detach().requires_grad_(True)
        start = time.perf_counter()
        out = model(x_var).float().logsumexp(1).sum()
        if out.requires_grad:  # an output without gradient (a vote) still times its forward
            torch.autograd.grad(out, x_var)
        best = min(best, time.perf_counter() - start)
    return best


class ChannelsLast(nn.Module):
    """Runs `module` (already converted to channels-last) on NHWC copies of NCHW inputs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous(memory_format=torch.channels_last))


class BF16Autocast(nn.Module):
    """Runs `module` under CPU bfloat16 autocast (convolutions and matmuls in bf16, float32 accumulation); the
    logits come back float32. Only the attacks' gradients use it: every candidate is scored on the engine."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x)


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # without them bf16 is emulated on x86 (slower than fp32)


def _wrapped(module: nn.Module, layout: str, precision: str) -> TorchModel:
    inner = ChannelsLast(module.to(memory_format=torch.channels_last)) if layout == "channels_last" else module
    if layout != "channels_last":
        module.to(memory_format=torch.contiguous_format)
    outer = BF16Autocast(inner) if precision == "bf16" else inner
    return lambda x: outer(x).float()


def prepare_for_attack(
    module: nn.Module, example: torch.Tensor, layout: str = "auto", precision: str = "fp32"
) -> tuple[TorchModel, str, str]:
    """Freeze `module`'s weights (in place) and return (the callable to attack, the layout used, the gradient
    precision used).

    `layout` is "auto" (timed), "contiguous" or "channels_last"; `precision` is "fp32", "bf16" or "auto" (bf16
    where this CPU runs it natively: AVX512_BF16 or AMX). Results agree up to rounding, so runs that must be
    bit-identical fix the layout (precision "auto" is the same on the same machine)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    has_conv = any(p.dim() == 4 for p in module.parameters())  # nn.Conv2d weights, or an ONNX twin's
    layouts = [layout] if layout != "auto" else ["contiguous", "channels_last"]
    if example.dim() != 4 or not has_conv:
        layouts = ["contiguous"]
    if precision == "auto":  # by the CPU's flags, not a timing: the same machine makes the same choice
        precision = "bf16" if native_bf16() else "fp32"
    forms = [(lay, precision) for lay in layouts]
    if len(forms) == 1:
        return _wrapped(module, *forms[0]), *forms[0]
    probe = example[:32]
    timed = {form: _step_seconds(_wrapped(module, *form), probe) for form in forms}
    chosen = forms[0]  # the default (contiguous fp32) unless another form is clearly faster
    fastest = min(timed, key=timed.get)
    if timed[chosen] > _MIN_GAIN * timed[fastest]:
        chosen = fastest
    return _wrapped(module, *chosen), *chosen


def native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)
