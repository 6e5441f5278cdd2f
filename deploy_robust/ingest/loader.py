"""load_model: any supported model file -> (nn.Module in eval mode, InputSpec, provenance)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.hashing import sha256_file
from deploy_robust.model import arch as arch_resolver
from deploy_robust.model.checkpoint import (extract_state_dict, group_by_layer, layer_dtypes, load_state_dict,
                                              read_checkpoint)
from deploy_robust.ingest.exported_program import load_exported_program
from deploy_robust.ingest.formats import ModelFormat, sniff
from deploy_robust.ingest.torchscript import load_torchscript
from deploy_robust.ingest.kinds import for_checkpoint
from deploy_robust.model.kind import KindLoad, ModelKind
from deploy_robust.model.loaded import LoadedModel, SpecOverrides, describe_layers
from deploy_robust.onnx_torch import OnnxGraphModule
from deploy_robust.quant.twin import twin_module
from deploy_robust.normalize import with_normalization
from deploy_robust.spec import InputSpec


def load_model(path: str | Path, arch: str | None = None, *, trust_pickle: bool = False,
               trust_code: bool = False, overrides: SpecOverrides | None = None) -> LoadedModel:
    """Load a TorchScript archive, a torch.export .pt2, a state_dict checkpoint (+ `arch`),
    a pickled module (only with `trust_pickle`), or an ONNX model.

    A model file that records a code architecture (`file.py:factory`) imports that file only
    when `arch` names the same file or `trust_code` is set (see `deploy_robust.model.arch.CodeTrust`)."""
    path = Path(path)
    overrides = overrides or SpecOverrides()
    fmt = sniff(path)
    if arch is not None and fmt not in (ModelFormat.TORCH_SAVE, ModelFormat.LEGACY_TORCH_SAVE):
        raise UserError(f"--arch is for state_dict checkpoints; {path.name} is a {fmt.value} file that carries its own graph")
    base_spec: InputSpec | None = None
    fixed_batch = None
    arch_name = None
    defense = transforms = None
    if fmt in (ModelFormat.TORCH_SAVE, ModelFormat.LEGACY_TORCH_SAVE):
        parts = _load_checkpoint(path, arch, trust_pickle, trust_code, overrides)
        module, base_spec, arch_name, fmt_name, dtypes = parts.module, parts.spec, parts.arch, parts.format, parts.dtypes
        defense, transforms = parts.defense, parts.transforms
    elif fmt is ModelFormat.TORCHSCRIPT:
        module = load_torchscript(path)
        dtypes, fmt_name = layer_dtypes(dict(module.state_dict())), fmt.value
    elif fmt is ModelFormat.EXPORTED_PROGRAM:
        module, base_spec_shape, fixed_batch = _load_exported_program(path, trust_pickle)
        dtypes, fmt_name = layer_dtypes(dict(module.state_dict())), fmt.value
        if base_spec_shape and overrides.shape is None:
            overrides = SpecOverrides(base_spec_shape, overrides.mean, overrides.std, overrides.num_classes)
    else:
        module, shape, fixed_batch = _load_onnx(path)
        dtypes, fmt_name = group_by_layer(module.source_dtypes), fmt.value
        if shape and overrides.shape is None:
            overrides = SpecOverrides(shape, overrides.mean, overrides.std, overrides.num_classes)

    module = module.float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    spec = _resolve_spec(module, base_spec, overrides, fixed_batch, path.name)
    source = {
        "file": path.name,
        "format": fmt_name,
        "sha256": sha256_file(path),
        "arch": arch_name,
        "layer_dtypes": dict(sorted(dtypes.items())),
    }
    if isinstance(module, OnnxGraphModule):  # layers named by the graph's initializers
        layers = [{"name": name, "type": "onnx", "source_dtype": dt} for name, dt in dtypes.items()]
    else:
        named = module.program if isinstance(module, _ProgramModule) else module
        layers = describe_layers(named, dtypes)
    return LoadedModel(module, spec, source, fixed_batch, layers, defense, transforms)


def _load_checkpoint(path: Path, arch: str | None, trust_pickle: bool, trust_code: bool,
                     overrides: SpecOverrides) -> KindLoad:
    """A torch.save file: a pickled module (with `trust_pickle`), a self-describing deploy-robust model file, or a
    state_dict for `arch` (or for the built-in architecture the file is named after)."""
    obj = read_checkpoint(path, trust_pickle)
    if isinstance(obj, nn.Module):
        return KindLoad(obj, None, None, "pickled_module", layer_dtypes(dict(obj.state_dict())))
    if (kind := for_checkpoint(obj)) is not None:  # written by train / dq / gdws / ensemble
        return _from_metadata(kind, obj, arch_resolver.CodeTrust(arch, trust_code), path.name)
    state = extract_state_dict(obj, path.name)
    architecture = _architecture_for(path, arch)
    module = architecture.build(overrides.num_classes)
    dtypes = load_state_dict(module, state, architecture.name)
    return KindLoad(module, architecture.spec, architecture.name, "state_dict", dtypes)


def _from_metadata(kind: ModelKind, obj: dict, trust: arch_resolver.CodeTrust, name: str) -> KindLoad:
    """Rebuild a self-describing model file through its kind; malformed metadata is a UserError."""
    if not isinstance(obj.get(kind.checkpoint_key), dict):
        raise UserError(f"{name}: its deploy-robust metadata is not a mapping")
    try:
        return kind.load(obj, name, trust)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UserError(f"{name}: malformed deploy-robust metadata ({type(e).__name__}: {e})") from None


def _architecture_for(path: Path, arch: str | None) -> arch_resolver.Architecture:
    if arch is not None:
        return arch_resolver.resolve(arch)
    entry = zoo.find(path.stem)
    if entry is not None:  # the built-in checkpoints are named after their architecture
        return arch_resolver.resolve(entry.name)
    raise UserError(f"{path.name} holds weights only (a state_dict): pass --arch NAME "
                    f"({', '.join(zoo.names())}) or --arch path/to/file.py:factory")


def _load_exported_program(path: Path, trust_pickle: bool) -> tuple[nn.Module, tuple[int, int, int] | None, int | None]:
    program = load_exported_program(path, trust_pickle)
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise UserError(f"{path.name}: an image classifier takes one input; this program takes {len(user_inputs)}")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
    value = node.meta.get("val")
    shape, fixed_batch = None, None
    if value is not None and value.dim() == 4:
        dims = list(value.shape)
        if all(isinstance(d, int) for d in dims[1:]):
            shape = tuple(int(d) for d in dims[1:])
        if isinstance(dims[0], int):
            fixed_batch = int(dims[0])  # exported without a dynamic batch dimension
    return _ProgramModule(program.module()), shape, fixed_batch


class _ProgramModule(nn.Module):
    """A torch.export program's module; it is fixed in eval mode and refuses .train()/.eval()."""

    def __init__(self, graph_module: nn.Module) -> None:
        super().__init__()
        self.program = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "_ProgramModule":
        self.training = mode  # the graph inside keeps the eval semantics it was exported with
        return self


def _load_onnx(path: Path) -> tuple[OnnxGraphModule, tuple[int, int, int] | None, int | None]:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise UserError(f"{path.name}: not a valid ONNX model: {str(e).splitlines()[0]}") from None
    try:
        module = twin_module(model, float_dtype=torch.float32)  # a Q/DQ graph is ingested too
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as e:   # checker-valid yet inconsistent
        raise UserError(f"{path.name}: the ONNX graph cannot be read ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:200]})") from None
    if len(module.input_names) != 1:
        raise UserError(f"{path.name}: an image classifier takes one input; this graph takes {len(module.input_names)}")
    graph_input = next(i for i in model.graph.input if i.name == module.input_names[0])
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
    shape = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    fixed_batch = dims[0] if len(dims) == 4 and dims[0] else None
    return module, shape, fixed_batch


def _resolve_spec(module: nn.Module, base: InputSpec | None, o: SpecOverrides, fixed_batch: int | None,
                  name: str) -> InputSpec:
    shape = o.shape or (base.shape if base else None)
    if shape is None:
        raise UserError(f"{name}: the input shape is not recorded in the model; pass --input-shape C,H,W")
    mean = o.mean if o.mean is not None else (base.mean if base else None)
    std = o.std if o.std is not None else (base.std if base else None)
    probe = InputSpec(shape=tuple(shape), num_classes=max(2, o.num_classes or 2), mean=mean, std=std)
    batch = fixed_batch or 2
    try:
        with torch.no_grad():
            out = with_normalization(module, probe)(torch.zeros(batch, *probe.shape))
            if isinstance(out, tuple) and getattr(module, "extra_output_names", ()):
                out = out[0]  # logits first; the rest are declared extra outputs
    except Exception as e:
        raise UserError(f"{name}: the model does not accept inputs of shape {batch}x{'x'.join(map(str, shape))}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{name}: a classifier must return logits of shape (N, classes); got {got}")
    num_classes = int(out.shape[1])
    expected = o.num_classes or (base.num_classes if base else None)
    if expected is not None and expected != num_classes:
        raise UserError(f"{name}: --num-classes {expected} but the model outputs {num_classes} logits")
    return probe.replace(num_classes=num_classes)
