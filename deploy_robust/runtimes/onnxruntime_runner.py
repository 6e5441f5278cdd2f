"""ONNX Runtime backend: CPU, or the CUDA execution provider when it is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import Runner


class OnnxRuntimeRunner(Runner):
    def __init__(self, model: str | Path | bytes, device: str = "cpu", threads: int | None = None,
                 optimization: str = "all", fixed_batch: int | None = None, fast_int4: bool = True) -> None:
        """`model`: a path or serialized bytes. `fast_int4` widens INT4 conv weights to INT8 at load
        (same values; ONNX Runtime then runs its fused integer convolution)."""
        import onnxruntime as ort

        self.model = model
        self.model_path = "<bytes>" if isinstance(model, bytes) else str(model)
        self.fast_int4 = fast_int4
        self.device = device
        self.threads = threads
        self.optimization = optimization
        self.fixed_batch = fixed_batch
        self.name = f"ort-{device}"
        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise UserError("backend ort-cuda needs ONNX Runtime's CUDA execution provider: "
                                "pip install onnxruntime-gpu (and a CUDA GPU)")
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
        self._session = None

    def activate(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization]
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self._session = ort.InferenceSession(self._model_bytes(), options, providers=self.providers)
        except Exception as e:
            raise UserError(f"ONNX Runtime cannot load {self.model_path}: {str(e).splitlines()[0]}") from None
        self._input = self._session.get_inputs()[0].name

    def _model_bytes(self) -> bytes:
        data = self.model if isinstance(self.model, bytes) else Path(self.model).read_bytes()
        if not self.fast_int4:
            return data
        import onnx

        from deploy_robust.kernels.int4_widen import widen_int4_conv_weights

        model = onnx.load_from_string(data)
        return model.SerializeToString() if widen_int4_conv_weights(model) else data

    def deactivate(self) -> None:
        self._session = None

    @property
    def session(self):
        self.activate()
        return self._session

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: x})

