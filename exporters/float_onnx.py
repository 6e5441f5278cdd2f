"""FP32 / FP16 ONNX export with normalization folded in: the engine takes float32 [0, 1] images.

The `torch.export`-based exporter is used first (deterministic, folds batch norm); a
TorchScript module, or a model torch.export cannot capture, goes through the TorchScript
exporter instead, and the manifest records which one ran.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.exporters.preprocess import reduce_mean_to_global_pool
from deploy_robust.normalize import HalfPrecision, with_normalization
from deploy_robust.onnx_ops import WEIGHTED_OPS
from deploy_robust.spec import InputSpec

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
FLOAT_PRECISIONS = ("fp32", "fp16")


@dataclass
class OnnxExport:
    model: onnx.ModelProto
    exporter: str
    opset: int


def export_float_onnx(
    module: nn.Module,
    spec: InputSpec,
    precision: str = "fp32",
    *,
    dynamic_batch: bool = True,
    fixed_batch: int | None = None,
    opset: int = DEFAULT_OPSET,
) -> OnnxExport:
    """Export `module` (which takes normalized inputs) as an ONNX graph taking [0, 1] images."""
    if precision not in FLOAT_PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(FLOAT_PRECISIONS)}; got {precision}")
    if fixed_batch is not None:
        dynamic_batch = False
    wrapped: nn.Module = with_normalization(module, spec)
    if precision == "fp16":
        wrapped = _normalize_then_half(module, spec)
    wrapped = wrapped.eval()
    batch = fixed_batch or 2
    example = torch.zeros(batch, *spec.shape)
    is_script = isinstance(module, torch.jit.ScriptModule)
    if is_script and wrapped is not module:
        wrapped = torch.jit.script(wrapped)  # the TorchScript exporter cannot trace into a scripted child
    errors = []
    outputs = [OUTPUT_NAME, *getattr(module, "extra_output_names", ())]  # e.g. a detector's score
    for exporter in ("torchscript",) if is_script else ("dynamo", "torchscript"):
        try:
            with _quiet():
                model = _run_exporter(exporter, wrapped, example, dynamic_batch, opset, outputs)
            break
        except Exception as e:  # try the next exporter; report all if none works
            errors.append(f"{exporter}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    else:
        raise UserError("ONNX export failed: " + " | ".join(errors))
    _clean(model)
    keep_source_names(model, wrapped)
    reduce_mean_to_global_pool(model)  # exact; also what the down-conversion to opset 17 cannot do itself
    model = _ensure_opset(model, opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise UserError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None
    return OnnxExport(model, exporter, opset)


def keep_source_names(model: onnx.ModelProto, module: nn.Module) -> bool:
    """Give the exported weighted layers the names they had in an ingested ONNX graph (`/fc/Gemm`, not the
    re-export's `/MatMul`), so quantization plans, `--layer` options and fallback notes name the user's layers.

    The source's weighted layers (a module's `source_weighted_nodes`, set by the ONNX graph interpreter) are
    matched in graph order by weight shape (a transposed matrix matches too); names stay as exported unless
    every layer matches. Returns whether names were restored."""
    sources = [m.source_weighted_nodes for m in module.modules() if getattr(m, "source_weighted_nodes", None)]
    if len(sources) != 1:
        return False
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    exported = [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in weights]
    source = sources[0]
    if len(exported) != len(source) or any(
        weights[n.input[1]] not in (shape, shape[::-1]) for n, (_, shape) in zip(exported, source)
    ):
        return False
    taken = {n.name for n in model.graph.node} - {n.name for n in exported}
    for node, (name, _) in zip(exported, source):
        if name and name not in taken:
            node.name = name
            taken.add(name)
    return True


def _normalize_then_half(module: nn.Module, spec: InputSpec) -> nn.Module:
    """Normalization stays float32 (it is where the input's precision matters); the rest runs in fp16."""
    half = HalfPrecision(module)
    if not spec.normalized:
        return half
    normalized = with_normalization(nn.Identity(), spec)
    return nn.Sequential(normalized, half)


def _run_exporter(
    exporter: str, model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int, outputs: list[str]
) -> onnx.ModelProto:
    if exporter == "dynamo":
        shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
        )
        return program.model_proto
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)} if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buffer.getvalue())


def graph_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _ensure_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The exporter's own down-conversion can silently leave a newer opset: convert, or fail clearly."""
    if graph_opset(model) == opset:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as e:
        raise UserError(
            f"the graph exports at opset {graph_opset(model)} and cannot be converted to {opset} "
            f"({str(e).splitlines()[0]}); pass --opset {graph_opset(model)}"
        ) from None
    return converted


def _clean(model: onnx.ModelProto) -> None:
    """Drop exporter debug metadata (stack traces with local paths); keep the graph and names."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in list(model.graph.value_info):
        del value.metadata_props[:]
    for init in model.graph.initializer:
        del init.metadata_props[:]
    del model.graph.metadata_props[:]
    model.graph.doc_string = ""
    model.doc_string = ""
    model.graph.name = "deploy_robust"


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings to stdout/logging (and C++ code to fd 2); a CLI tool must not."""
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    loggers = [
        logging.getLogger(n)
        for n in (
            "torch.onnx",
            "torch._export",
            "torch.export",
            "onnxscript",
            "torch._dynamo",
            "torch.fx.experimental.symbolic_shapes",
        )
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
