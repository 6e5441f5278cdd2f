"""Backends behind one Runner interface. Each imports lazily; a missing one is a clear 'install X'.

    create_runner("ort-cpu", bundle)      # the engine that ships
    create_runner("torch", bundle)        # the bundle's own graph, rebuilt in torch
    create_runner("torch", module=model)  # any module taking [0, 1] images
"""

from __future__ import annotations

import importlib

from torch import nn

from deploy_robust.bundle import Bundle
from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import Runner

# backend -> (module to import, package to install if it is missing)
BACKENDS = {
    "ort-cpu": ("onnxruntime", "onnxruntime"),
    "ort-cuda": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch", "torch"),
    "torch-cuda": ("torch", "torch (a CUDA build)"),
    "tensorrt": ("tensorrt", "tensorrt (on a machine with an NVIDIA GPU)"),
}


def create_runner(backend: str, bundle: Bundle | None = None, *, module: nn.Module | None = None,
                  threads: int | None = None) -> Runner:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    package, install = BACKENDS[backend]
    try:
        importlib.import_module(package)
    except ImportError:
        raise UserError(f"backend {backend} needs {package}: pip install {install}") from None
    fixed_batch = bundle.fixed_batch if bundle is not None else None
    if backend == "tensorrt":
        if bundle is None:
            raise UserError("backend tensorrt runs a bundle; export the model first")
        from deploy_robust.runtimes.tensorrt_runner import TensorRTRunner

        return TensorRTRunner(bundle.model_path, bundle.spec.shape, fixed_batch=fixed_batch)
    if backend.startswith("ort"):
        if bundle is None:
            raise UserError(f"backend {backend} runs a bundle; export the model first")
        from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner

        device = "cuda" if backend == "ort-cuda" else "cpu"
        return OnnxRuntimeRunner(bundle.model_path, device, threads, optimization=ort_optimization(bundle, device),
                                 fixed_batch=fixed_batch)
    from deploy_robust.runtimes.torch_runner import TorchRunner

    if module is None:
        if bundle is None:
            raise UserError("the torch backend needs a bundle or a module")
        module = bundle_as_torch(bundle)
    return TorchRunner(module, "cuda" if backend == "torch-cuda" else "cpu", fixed_batch=fixed_batch)


def ort_optimization(bundle: Bundle, device: str) -> str:
    """Graph optimization level for running `bundle` on ONNX Runtime.

    A quantized bundle made for TensorRT or ORT-CUDA has signed activations; ONNX Runtime's
    fused x86 integer kernels shift them to uint8 and, without VNNI, saturate int16 sums.
    On the CPU such a bundle runs unfused ("basic"): exact Q/DQ semantics, which is what its
    own runtime is specified to compute, at float speed.
    """
    quantized = bundle.precision not in ("fp32", "fp16")
    return "basic" if (device == "cpu" and quantized and bundle.manifest.target != "ort-cpu") else "all"


def bundle_as_torch(bundle: Bundle) -> nn.Module:
    """The bundle's ONNX graph (Q/DQ included) as a torch module, computing in the precisions the graph states."""
    from deploy_robust.quant.twin import twin_module

    return twin_module(bundle.model_path, float_dtype=None, all_outputs=True)


__all__ = ["BACKENDS", "Runner", "create_runner", "bundle_as_torch", "ort_optimization"]
