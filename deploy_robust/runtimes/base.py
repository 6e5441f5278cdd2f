"""The one interface every backend implements (after Polygraphy's runners): activate / infer / deactivate."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

PRECISION_HINTS = ("default", "f32", "bf16", "f16")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime is configured (what `eval`, `bench` and `verify` take as flags). None: the runtime's default.

    `precision_hint` is OpenVINO's inference precision ("default" lets it pick: bf16 on AMX CPUs);
    `streams` its number of parallel execution streams; `device` its device name (CPU; GPU/NPU are
    passed through, untested here)."""

    threads: int | None = None
    device: str | None = None
    streams: int | None = None
    precision_hint: str = "default"
    cache: bool = True  # compiled-model cache in the user's deploy-robust folder (OpenVINO)


class Runner(abc.ABC):
    """Runs a classifier: float32 [0, 1] images (N,C,H,W) -> every graph output, logits first.

    `infer` returns the logits (N, classes); `infer_outputs` every named output (a detector's
    score, an ensemble's member log-probabilities), from the same engine. A runner whose graph
    has a fixed batch size gets any batch: both split and pad.
    """

    name: str = "runner"
    fixed_batch: int | None = None

    def activate(self) -> None:
        """Load what is needed to run (sessions, engines); cheap to call twice."""

    def deactivate(self) -> None:
        """Free what `activate` loaded."""

    @abc.abstractmethod
    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch that the backend accepts as is; every output, in the graph's order."""

    def infer_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the engine for `x`, in the graph's order (logits first)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return list(self._infer_all(x))
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(x), self.fixed_batch):
            chunk = x[start : start + self.fixed_batch]
            short = self.fixed_batch - len(chunk)
            if short:
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), np.float32)])
            parts.append([out[: self.fixed_batch - short] for out in self._infer_all(chunk)])
        return [np.concatenate(outs) for outs in zip(*parts)]

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The logits (the first output) as float32."""
        return self.infer_outputs(x)[0].astype(np.float32, copy=False)

    def execution(self) -> dict[str, Any]:
        """How this engine runs the graph, as configured: what bench.json and verify.json record. Runtimes
        that may compute in another precision than the graph states (OpenVINO's bf16) say which."""
        return {"backend": self.name, "executed_precision": "as the graph states"}

    def layer_profile(self, x: np.ndarray, repeats: int = 10) -> list[dict[str, Any]]:
        """Time per layer from the runtime's own profiler: name, op, kernel, precision, mean ms per run."""
        raise NotImplementedError(f"{self.name} has no per-layer profiler here")

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()
