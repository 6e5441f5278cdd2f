"""Backends behind one Runner interface, in a registry; each imports lazily, a missing one is one 'install X' line.

    create_runner("ort-cpu", bundle)      # the engine that ships
    create_runner("torch", bundle)        # the bundle's own graph, rebuilt in torch
    create_runner("torch", module=model)  # any module taking [0, 1] images

As in Polygraphy, loaders (what builds a session or an engine: `onnxruntime_session`,
`tensorrt_engine`) are separate from runners (what runs it). Adding a runtime is one module
with a `runner_for(backend, bundle, module=, options=)` and one `Backend` entry below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from torch import nn

from deploy_robust.bundle import Bundle
from deploy_robust.errors import UserError
from deploy_robust.runtimes.base import Runner, RuntimeOptions


@dataclass(frozen=True)
class Backend:
    name: str
    package: str  # imported first: its absence is the one-line "install" message
    install: str  # what to install when it is missing
    runner_module: str  # deploy_robust.runtimes.<runner_module>.runner_for builds the runner
    runs_modules: bool = False  # also runs a torch module (not only a bundle)
    options: tuple[str, ...] = ("threads",)  # the RuntimeOptions it honours; others are refused, not ignored
    no_effect: tuple[str, ...] = ()  # accepted without effect (a GPU engine has no thread setting)
    gpu: bool = False  # runs on a CUDA GPU (one per rank under --workers / torchrun)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("ort-cpu", "onnxruntime", "pip install onnxruntime", "onnxruntime_runner"),
        Backend("ort-cuda", "onnxruntime", "pip install onnxruntime-gpu", "onnxruntime_runner", gpu=True),
        Backend("torch", "torch", "pip install torch", "torch_runner", runs_modules=True),
        Backend("torch-cuda", "torch", "a CUDA build of torch", "torch_runner", runs_modules=True, gpu=True),
        Backend(
            "tensorrt",
            "tensorrt",
            "pip install tensorrt (on a machine with an NVIDIA GPU)",
            "tensorrt_runner",
            options=(),
            no_effect=("threads",),
            gpu=True,
        ),
        Backend(
            "openvino",
            "openvino",
            "pip install openvino",
            "openvino_runner",
            options=("threads", "device", "streams", "precision_hint", "cache"),
        ),
    )
}

_OPTION_FLAGS = {
    "threads": "--threads",
    "device": "--device",
    "streams": "--streams",
    "precision_hint": "--precision-hint",
}


def unsupported(backend: str, options: RuntimeOptions) -> list[str]:
    """The options set (not at their default) that `backend` neither honours nor accepts without effect."""
    entry, default = BACKENDS[backend], RuntimeOptions()
    return [
        name
        for name in _OPTION_FLAGS
        if getattr(options, name) != getattr(default, name) and name not in entry.options + entry.no_effect
    ]


def refuse(name: str, backend: str) -> UserError:
    takers = ", ".join(b.name for b in BACKENDS.values() if name in b.options)
    return UserError(f"{_OPTION_FLAGS[name]} applies to {takers}; not to backend {backend}")


def options_for(backend: str, options: RuntimeOptions) -> RuntimeOptions:
    """`options` without what `backend` does not take (for one run over several backends: `bench --backend
    ort-cpu,openvino --precision-hint f32` sets the hint where it means something)."""
    if backend not in BACKENDS:
        return options
    return replace(options, **{name: getattr(RuntimeOptions(), name) for name in unsupported(backend, options)})


def create_runner(
    backend: str,
    bundle: Bundle | None = None,
    *,
    module: nn.Module | None = None,
    threads: int | None = None,
    options: RuntimeOptions | None = None,
) -> Runner:
    """`threads` is shorthand for `options=RuntimeOptions(threads=...)`; a backend refuses options it does not take."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    entry = BACKENDS[backend]
    options = options or RuntimeOptions(threads=threads)
    refused = unsupported(backend, options)
    if refused:
        raise refuse(refused[0], backend)
    try:
        importlib.import_module(entry.package)
    except ImportError:
        raise UserError(f"backend {backend} needs {entry.package}: {entry.install}") from None
    if bundle is None and not (entry.runs_modules and module is not None):
        raise UserError(f"backend {backend} runs a bundle; export the model first (deploy-robust export)")
    runner_module = importlib.import_module(f"deploy_robust.runtimes.{entry.runner_module}")
    return runner_module.runner_for(backend, bundle, module=module, options=options)


__all__ = ["BACKENDS", "Backend", "Runner", "RuntimeOptions", "create_runner", "options_for"]
