"""Threat model: norm and radius on the [0, 1] image scale, with the projections the attacks need."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from deploy_robust.errors import UserError

NORMS = ("linf", "l2")


def parse_eps(text: str | float) -> float:
    """An eps on the [0, 1] scale: a number, or a fraction whose parts are numbers (8/255, 1.0/255, 0.5/255)."""
    try:
        if "/" in str(text):
            top, bottom = str(text).split("/")
            value = float(Fraction(top.strip()) / Fraction(bottom.strip()))
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise UserError(f"--eps must be a number or a fraction like 8/255; got {text}") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"--eps must be a finite number >= 0; got {text}")
    return value


@dataclass(frozen=True)
class ThreatModel:
    norm: str
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"--norm must be one of {', '.join(NORMS)}; got {self.norm}")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise UserError(f"--eps must be a finite number >= 0; got {self.eps}")
        if self.norm == "linf" and self.eps > 1:
            raise UserError(
                f"--eps {self.eps:g} is larger than the whole [0, 1] image range under L-inf; "
                f"did you mean {self.eps:g}/255?"
            )

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Back into the eps-ball around x and into [0, 1]."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            delta = delta * torch.clamp(self.eps / norms, max=1.0)
        return (x + delta).clamp(0, 1)

    def step(self, grad: torch.Tensor, size: float) -> torch.Tensor:
        """The steepest-ascent step of the norm: sign for L-inf, normalized gradient for L2."""
        if self.norm == "linf":
            return size * grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
        return size * grad / norms

    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.norm == "linf":
            noise = (torch.rand(x.shape, generator=generator) * 2 - 1) * self.eps
        else:
            noise = torch.randn(x.shape, generator=generator)
            noise = noise / noise.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
            noise = noise * self.eps * torch.rand(len(x), generator=generator).view(-1, *[1] * (x.dim() - 1))
        return self.project(x + noise, x)

    def describe(self) -> str:
        eps = Fraction(self.eps).limit_denominator(1000)
        shown = f"{eps.numerator}/{eps.denominator}" if eps.denominator in (255, 510) else f"{self.eps:g}"
        return f"{'L-inf' if self.norm == 'linf' else 'L2'} eps={shown} on [0,1] images"
