"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_robust.bundle import Bundle
from deploy_robust.runtimes.base import Runner
from deploy_robust.runtimes.onnxruntime_session import load_session, optimization_level, providers_for


class OnnxRuntimeRunner(Runner):
    def __init__(self, model: str | Path | bytes, device: str = "cpu", threads: int | None = None,
                 optimization: str = "all", fixed_batch: int | None = None, fast_int4: bool = True) -> None:
        """`model`: a path or serialized bytes; see `onnxruntime_session.load_session` for the rest."""
        self.model = model
        self.model_path = "<bytes>" if isinstance(model, bytes) else str(model)
        self.fast_int4 = fast_int4
        self.device = device
        self.threads = threads
        self.optimization = optimization
        self.fixed_batch = fixed_batch
        self.name = f"ort-{device}"
        self.providers = providers_for(device)
        self._session = None

    def activate(self) -> None:
        if self._session is not None:
            return
        self._session = load_session(self.model, providers=self.providers, threads=self.threads,
                                     optimization=self.optimization, fast_int4=self.fast_int4)
        self._input = self._session.get_inputs()[0].name

    def deactivate(self) -> None:
        self._session = None

    @property
    def session(self):
        self.activate()
        return self._session

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: x})


def runner_for(backend: str, bundle: Bundle, *, module=None, threads: int | None = None) -> OnnxRuntimeRunner:
    device = "cuda" if backend == "ort-cuda" else "cpu"
    quantized = bundle.precision not in ("fp32", "fp16")
    optimization = optimization_level(quantized=quantized, signed_activations=bundle.manifest.target != "ort-cpu",
                                      device=device)
    return OnnxRuntimeRunner(bundle.model_path, device, threads, optimization=optimization,
                             fixed_batch=bundle.fixed_batch)
