"""Every setting of one verify run, checked once; the resume key of its finished batches is derived from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from deploy_robust.errors import UserError
from deploy_robust.runtimes import RuntimeOptions
from deploy_robust.verify.suites import SUITES

LAYOUTS = ("auto", "contiguous", "channels_last")
GRADIENT_PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class VerifyOptions:
    """How a bundle is verified.

    `sweep`: "auto" (the threat's eps scaled, `protocol.sweep_for`), explicit radii, or None (no eps curve).
    `bpda=False` attacks S with plain gradients (to show what masking does); never for a verdict.
    `eot` overrides the EOT draws for a stochastic engine (1 shows what naive attacks report).
    With `resume`, finished batches of an interrupted run with identical settings are reused.
    `layout` is the memory layout attacks run in ("auto": the faster one, timed; see verify.speed).
    `gradient_precision`: the twin's gradients in "fp32", "bf16" (autocast) or "auto" (bf16 on a float graph where
    this CPU runs it natively). Every candidate is still scored on the engine.
    `attack_output` overrides which graph output S's attacks use (see protocol.attack_twin).
    `runtime` configures the engine E, which is verified as configured."""

    n: int = 500
    suite: str = "standard"
    backend: str = "ort-cpu"
    batch_size: int = 128
    seed: int = 0
    sweep: tuple[float, ...] | str | None = "auto"
    bpda: bool = True
    eot: int | None = None
    resume: bool = True
    layout: str = "auto"
    gradient_precision: str = "auto"
    attack_output: str | None = None
    runtime: RuntimeOptions = RuntimeOptions()

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise UserError(f"--suite must be one of {', '.join(SUITES)}; got {self.suite}")
        if self.layout not in LAYOUTS:
            raise UserError(f"--layout must be one of {', '.join(LAYOUTS)}; got {self.layout}")
        if self.gradient_precision not in GRADIENT_PRECISIONS:
            raise UserError(
                f"--gradient-precision must be one of {', '.join(GRADIENT_PRECISIONS)}; got {self.gradient_precision}"
            )
        for name in ("n", "batch_size") + (("eot",) if self.eot is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive whole number; got {value!r}")

    def resume_fields(self) -> dict:
        """The settings that change results, for the resume key (n, the sweep and `resume` itself do not:
        the points are keyed by the data, and the sweep runs after the batches)."""
        return {
            "suite": self.suite,
            "seed": self.seed,
            "backend": self.backend,
            "batch_size": self.batch_size,
            "bpda": self.bpda,
            "layout": self.layout,
            "gradient_precision": self.gradient_precision,
            "attack_output": self.attack_output,
            "runtime": asdict(self.runtime),
        }
