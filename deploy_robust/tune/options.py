"""Every setting of one tune, checked once when the options are made."""

from __future__ import annotations

from dataclasses import dataclass


from deploy_robust.errors import UserError
from deploy_robust.targets import get_target
from deploy_robust.tune.space import GDWS, GDWS_BUDGETS, Pins, check_space
from deploy_robust.verify import ThreatModel


SENSITIVITIES = ("in-memory", "exported")  # how a layer's sensitivity is measured (tune.sensitivity)


@dataclass(frozen=True)
class TuneOptions:
    threat: ThreatModel
    target: str = "ort-cpu"
    max_robust_drop: float = 0.01
    max_clean_drop: float = 0.01
    batch: int = 1
    objective: str = "latency"  # "latency" (ms per batch) or "throughput" (ms per image)
    metric: str = "robust"  # what the sensitivities and the budget check: "robust" or "clean"
    space: tuple[str, ...] | None = None
    n: int = 200  # test points for the candidates' quick verification
    final_n: int = 500  # test points for the pick's standard verification
    sensitivity_n: int = 64  # calibration images for the per-layer sensitivities
    sensitivities: str = "in-memory"  # "in-memory" (the layer lowered in the torch model) or "exported" bundles
    seed: int = 0
    threads: int | None = None
    bench_seconds: float = 2.0  # per bundle and batch in each interleaved benchmark (3 rounds)
    latency_budget_ms: float | None = None  # the pick must also be at most this fast (in the objective's unit)
    pins: Pins = ()  # (layer, precision): fixed in every plan and configuration
    time_budget_s: float | None = None
    gdws_budgets: tuple[float, ...] = GDWS_BUDGETS  # with `gdws` in the space
    # how much faster than a verified pick a contender must measure, timed again beside it alone, for its own
    # final check to start: one plan's ratio to uniform INT8 ranged 0.99-1.03x over runs on a quiet 2-core machine
    # (docs/tune.md), and a ResNet-18's final check costs half an hour there
    min_gain: float = 0.05

    def precision_space(self) -> tuple[str, ...] | None:
        """The per-layer precisions asked for (None: every one the target runs)."""
        if self.space is None or "precision" in self.space:
            return None
        return tuple(p for p in self.space if p != GDWS)

    @property
    def with_gdws(self) -> bool:
        return self.space is not None and GDWS in self.space

    def __post_init__(self) -> None:  # every setting checked once, when the options are made
        if self.objective not in ("latency", "throughput"):
            raise UserError(f"--objective must be latency or throughput; got {self.objective}")
        if self.metric not in ("robust", "clean"):
            raise UserError(f"--objective-metric must be robust or clean; got {self.metric}")
        for name, value in (("--max-robust-drop", self.max_robust_drop), ("--max-clean-drop", self.max_clean_drop)):
            if not 0 <= value <= 1:
                raise UserError(f"{name} must be in [0, 1]; got {value:g} (did you mean {value / 100:g}?)")
        for name, value in (("--batch", self.batch), ("--n", self.n), ("--final-n", self.final_n)):
            if value < 1:
                raise UserError(f"{name} must be positive; got {value}")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise UserError(f"--latency-budget-ms must be positive; got {self.latency_budget_ms:g}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise UserError(f"--time-budget must be positive; got {self.time_budget_s:g} s")
        if self.with_gdws and not all(0 < b < 1 for b in self.gdws_budgets):
            raise UserError(f"--gdws-budgets are fractions of MACs kept, in (0, 1); got {list(self.gdws_budgets)}")
        if not 0 <= self.min_gain < 1:
            raise UserError(f"--min-gain is a fraction of the verified pick's time, in [0, 1); got {self.min_gain:g}")
        if self.sensitivities not in SENSITIVITIES:
            raise UserError(f"--sensitivities must be one of {', '.join(SENSITIVITIES)}; got {self.sensitivities}")
        get_target(self.target)
        if self.space is not None:
            check_space(self.target, tuple(p for p in self.space if p != "precision"))
