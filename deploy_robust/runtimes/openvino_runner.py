"""OpenVINO backend: runs a bundle's ONNX graph with OpenVINO (CPU; other device names passed through).

What it records is what runs: OpenVINO's CPU plugin computes float layers in bf16 on CPUs with
AMX or AVX-512 BF16 unless told `--precision-hint f32`, so `execution()` reports the hint the
compiled model holds and the runtime precision of every weighted layer in its runtime graph.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from deploy_robust.bundle import Bundle
from deploy_robust.runtimes.base import Runner, RuntimeOptions
from deploy_robust.runtimes.openvino_model import compile_bundle_graph

# Runtime-graph layer types that carry the arithmetic (their precision is the one that matters)
_WEIGHTED = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")


class OpenVINORunner(Runner):
    def __init__(
        self, model_path, options: RuntimeOptions = RuntimeOptions(), fixed_batch: int | None = None, widen: bool = True
    ) -> None:
        """`widen`: look for INT4 weights to widen (False when the bundle's manifest records none)."""
        self.model_path, self.options, self.fixed_batch, self.widen = model_path, options, fixed_batch, widen
        self.name = "openvino"
        self._compiled = self._request = None
        self._requests: list = []

    def activate(self) -> None:
        if self._compiled is None:
            self._compiled = compile_bundle_graph(self.model_path, self.options, widen=self.widen)
            streams = int(_property(self._compiled, "NUM_STREAMS", 1))
            self._requests = [self._compiled.create_infer_request() for _ in range(max(1, streams))]
            self._request = self._requests[0]

    def deactivate(self) -> None:
        self._compiled = self._request = None
        self._requests = []

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        """One request per stream: a batch is split into one slice per stream, run at once (--streams N
        keeps N cores' worth of independent work in flight; results are the same as one request's)."""
        self.activate()
        count = len(self._compiled.outputs)
        if len(self._requests) == 1 or len(x) < 2 or self.fixed_batch is not None:
            self._request.infer({0: x})
            return [np.array(self._request.get_output_tensor(i).data) for i in range(count)]
        slices = [s for s in np.array_split(x, min(len(self._requests), len(x))) if len(s)]
        used = self._requests[: len(slices)]
        for request, part in zip(used, slices):
            request.start_async({0: np.ascontiguousarray(part)})
        for request in used:
            request.wait()
        return [np.concatenate([np.array(r.get_output_tensor(i).data) for r in used]) for i in range(count)]

    def execution(self) -> dict[str, Any]:
        self.activate()
        compiled = self._compiled
        precisions: Counter = Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in _WEIGHTED:
                precisions[info["runtimePrecision"].astype(str)] += 1
        hint = _property(compiled, "INFERENCE_PRECISION_HINT", None)
        return {
            "backend": self.name,
            "device": ", ".join(_property(compiled, "EXECUTION_DEVICES", [self.options.device])),
            "inference_precision_hint": hint.get_type_name() if hint is not None else "unknown",
            "executed_precision": executed_precision(precisions),
            "weighted_layers_by_precision": dict(sorted(precisions.items())),
            "streams": int(_property(compiled, "NUM_STREAMS", 0)),
            "threads": int(_property(compiled, "INFERENCE_NUM_THREADS", 0)),
        }

    def layer_profile(self, x: np.ndarray, repeats: int = 10) -> list[dict[str, Any]]:
        compiled = compile_bundle_graph(self.model_path, self.options, profile=True, widen=self.widen)
        request = compiled.create_infer_request()
        x = np.ascontiguousarray(x, dtype=np.float32)
        request.infer({0: x})  # warm-up: first-run allocations are not the layers' time
        totals: dict[tuple[str, str, str], float] = {}
        for _ in range(repeats):
            request.infer({0: x})
            for p in request.get_profiling_info():
                if str(p.status).endswith("EXECUTED") and not str(p.status).endswith("NOT_RUN"):
                    key = (p.node_name, p.node_type, p.exec_type)
                    totals[key] = totals.get(key, 0.0) + p.real_time.total_seconds() * 1e3
        return [
            {"layer": name, "op": op, "kernel": kernel, "precision": _kernel_precision(kernel), "ms": total / repeats}
            for (name, op, kernel), total in totals.items()
        ]


def executed_precision(weighted: Counter) -> str:
    """One word for what the weighted layers compute in: "bf16", "f32", "int8", or a mix ("int8+bf16")."""
    names = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f32": "f32", "f16": "f16", "u4": "int4", "i4": "int4"}
    kinds = sorted(
        {names.get(p, p) for p in weighted}, key=lambda k: -sum(n for p, n in weighted.items() if names.get(p, p) == k)
    )
    return "+".join(kinds) if kinds else "none"


def _kernel_precision(kernel: str) -> str:
    """The precision an OpenVINO CPU kernel name ends in (brgconv_avx512_amx_bf16 -> bf16, ..._I8 -> int8)."""
    tail = kernel.rsplit("_", 1)[-1].lower()
    return {"i8": "int8", "u8": "int8", "bf16": "bf16", "f32": "f32", "f16": "f16"}.get(tail, tail)


def runner_for(
    backend: str, bundle: Bundle, *, module=None, options: RuntimeOptions = RuntimeOptions()
) -> OpenVINORunner:
    stores_int4 = any(layer.get("precision") == "int4" for layer in bundle.manifest.precision.layers)
    return OpenVINORunner(bundle.model_path, options, fixed_batch=bundle.fixed_batch, widen=stores_int4)


def _property(compiled, name: str, default):
    """A compiled model's property, or `default` where its device does not report it (AUTO and HETERO do not
    report NUM_STREAMS, for one)."""
    try:
        return compiled.get_property(name)
    except RuntimeError:
        return default
