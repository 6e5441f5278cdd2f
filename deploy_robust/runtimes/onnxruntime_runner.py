"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is installed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.bundle import Bundle
from deploy_robust.cpu import u8s8_saturates
from deploy_robust.errors import warn
from deploy_robust.runtimes.base import Runner, RuntimeOptions
from deploy_robust.runtimes.onnxruntime_session import load_session, optimization_level, providers_for


_ORT_TYPES = {"float": "f32", "float16": "f16", "bfloat16": "bf16", "uint8": "int8", "int8": "int8"}


class OnnxRuntimeRunner(Runner):
    def __init__(
        self,
        model: str | Path | bytes,
        device: str = "cpu",
        threads: int | None = None,
        optimization: str = "all",
        fixed_batch: int | None = None,
        fast_int4: bool = True,
    ) -> None:
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
        self._session = load_session(
            self.model,
            providers=self.providers,
            threads=self.threads,
            optimization=self.optimization,
            fast_int4=self.fast_int4,
        )
        self._input = self._session.get_inputs()[0].name

    def deactivate(self) -> None:
        self._session = None

    @property
    def session(self):
        self.activate()
        return self._session

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: x})

    def execution(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "execution_providers": self.session.get_providers(),
            "graph_optimization_level": self.optimization,
            "executed_precision": "as the graph states (float ops in their ONNX type, Q/DQ in integers)",
        }

    def layer_profile(self, x: np.ndarray, repeats: int = 10) -> list[dict[str, Any]]:
        """ONNX Runtime's own profiler: per node of the optimized graph, its op (the fused kernel, e.g.
        QLinearConv), execution provider, input precision and mean time per run."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            session = load_session(
                self.model,
                providers=self.providers,
                threads=self.threads,
                optimization=self.optimization,
                fast_int4=self.fast_int4,
                profile_prefix=str(Path(tmp) / "ort"),
            )
            name = session.get_inputs()[0].name
            session.run(None, {name: x})  # warm-up, not counted below
            for _ in range(repeats):
                session.run(None, {name: x})
            events = json.loads(Path(session.end_profiling()).read_text())
        runs: dict[str, list[float]] = {}
        meta: dict[str, dict[str, Any]] = {}
        for event in events:
            if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                continue
            layer = event["name"][: -len("_kernel_time")]
            args = event.get("args", {})
            runs.setdefault(layer, []).append(event["dur"] / 1e3)
            inputs = args.get("input_type_shape") or [{}]
            meta[layer] = {
                "op": args.get("op_name", "?"),
                "kernel": f"{args.get('op_name', '?')} ({args.get('provider', '?').replace('ExecutionProvider', '')})",
                "precision": _ORT_TYPES.get(next(iter(inputs[0]), "?"), next(iter(inputs[0]), "?")),
            }
        # the first run after the warm-up's allocations may still be slow: average over the last `repeats`
        return [
            {"layer": layer, **meta[layer], "ms": float(np.mean(times[-repeats:]))} for layer, times in runs.items()
        ]


def runner_for(
    backend: str, bundle: Bundle, *, module=None, options: RuntimeOptions = RuntimeOptions()
) -> OnnxRuntimeRunner:
    device = "cuda" if backend == "ort-cuda" else "cpu"
    quantized = bundle.precision not in ("fp32", "fp16")
    full_range = (bundle.manifest.precision.int8_weight_levels or 63) > 63
    optimization = optimization_level(
        quantized=quantized,
        signed_activations=bundle.manifest.target != "ort-cpu",
        device=device,
        full_range_weights=full_range,
    )
    if device == "cpu" and quantized and full_range and u8s8_saturates():
        warn(
            f"{bundle.path.name}: full-range int8 weights on a CPU without VNNI/AMX: ONNX Runtime runs it unfused "
            "(exact, slower); re-export with --int8-weights reduced for integer speed here"
        )
    return OnnxRuntimeRunner(
        bundle.model_path, device, options.threads, optimization=optimization, fixed_batch=bundle.fixed_batch
    )
