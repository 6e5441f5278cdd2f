"""TensorRT backend: builds (or loads the cached) engine of a bundle and runs it with torch CUDA buffers.

Uses the name-based TensorRT 10 API (`set_input_shape`, `set_tensor_address`,
`execute_async_v3`). Device buffers are torch CUDA tensors, so no pycuda is needed.
`phases` splits a call into host-to-device copy, engine compute and device-to-host copy,
timed with CUDA events (as trtexec reports them). Not run where it was written (no GPU with
TensorRT there); tests are marked `tensorrt`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_robust.bundle import Bundle
from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import Runner, RuntimeOptions
from deploy_robust.runtimes.tensorrt_engine import import_tensorrt, load_or_build_engine


def _torch_dtype(trt, dtype):
    """The torch dtype of a TensorRT tensor dtype (float32 for any other)."""
    import torch

    pairs = [
        ("float32", torch.float32),
        ("float16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("int32", torch.int32),
        ("int64", torch.int64),
        ("int8", torch.int8),
        ("bool", torch.bool),
    ]
    return next((t for name, t in pairs if hasattr(trt, name) and dtype == getattr(trt, name)), torch.float32)


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: Path,
        input_shape: tuple[int, ...],
        engine_path: Path | None = None,
        fixed_batch: int | None = None,
    ) -> None:
        import torch

        if not torch.cuda.is_available():
            raise UserError("backend tensorrt needs an NVIDIA GPU and a CUDA build of torch")
        self.trt = import_tensorrt()
        self.onnx_path, self.input_shape = Path(onnx_path), tuple(input_shape)
        self.engine_path = engine_path or self.onnx_path.with_suffix(".engine")
        self.fixed_batch = fixed_batch
        self._context = None

    def activate(self) -> None:
        if self._context is not None:
            return
        import torch

        trt = self.trt
        blob = load_or_build_engine(self.onnx_path, self.input_shape, self.engine_path, fixed_batch=self.fixed_batch)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise UserError(f"{self.engine_path}: not an engine for this GPU/TensorRT version; delete it to rebuild")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._outputs = [
            (n, _torch_dtype(trt, self._engine.get_tensor_dtype(n)))
            for n in names
            if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        ]
        self._stream = torch.cuda.Stream()

    def deactivate(self) -> None:
        self._context = None

    def _run_device(self, x_dev):
        import torch

        self._context.set_input_shape(self._input, tuple(x_dev.shape))
        self._context.set_tensor_address(self._input, x_dev.data_ptr())
        outs = []
        for name, dtype in self._outputs:  # every output, in the engine's I/O order (the graph's)
            out = torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return outs

    def _infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        self.activate()
        with torch.cuda.stream(self._stream):
            x_dev = torch.from_numpy(x).pin_memory().to("cuda", non_blocking=True)
            outs = [o.to("cpu", non_blocking=True) for o in self._run_device(x_dev)]
        self._stream.synchronize()
        return [o.numpy() for o in outs]

    def phases(self, x: np.ndarray) -> dict[str, float]:
        """Milliseconds of H2D copy, engine compute and D2H copy, from CUDA events."""
        import torch

        self.activate()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        host = torch.from_numpy(x).pin_memory()
        with torch.cuda.stream(self._stream):
            events[0].record()
            x_dev = host.to("cuda", non_blocking=True)
            events[1].record()
            outs = self._run_device(x_dev)
            events[2].record()
            for out in outs:
                out.to("cpu", non_blocking=True)
            events[3].record()
        self._stream.synchronize()
        return {
            "h2d": events[0].elapsed_time(events[1]),
            "compute": events[1].elapsed_time(events[2]),
            "d2h": events[2].elapsed_time(events[3]),
        }


def runner_for(
    backend: str, bundle: Bundle, *, module=None, options: RuntimeOptions = RuntimeOptions()
) -> TensorRTRunner:
    return TensorRTRunner(bundle.model_path, bundle.spec.shape, fixed_batch=bundle.fixed_batch)
