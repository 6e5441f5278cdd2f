"""The interpreter: an ONNX graph run node by node as a torch module, and the op table it runs with.

Handlers are keyed by ONNX op type (`register`); `OPS` is the float table that
`deploy_robust.onnx_torch.ops` and `.random_ops` fill in on import. Float initializers become
parameters; integer initializers and shape arithmetic stay static Python values, so
`torch.export` sees no data-dependent control flow.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.onnx_ops import WEIGHTED_OPS

# Ops computed once at load time where every input is an initializer (`OnnxGraphModule._fold_constants`).
FOLDABLE = frozenset({"DequantizeLinear"})

Value = Any  # a torch.Tensor, or a static numpy array / Python list for shapes and indices
Handler = Callable[[list[Value], dict[str, Any]], Value]
OPS: dict[str, Handler] = {}


def register(*op_types: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        for op in op_types:
            OPS[op] = fn
        return fn

    return wrap


FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
TORCH_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        out[a.name] = value
    return out


class OnnxGraphModule(nn.Module):
    """A torch module that computes what an ONNX graph computes (first graph output).

    `float_dtype` is the dtype float initializers and float casts are computed in; the
    default float32 runs an FP16 graph at full precision (the ingest path), while
    `float_dtype=None` keeps every cast as written.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        float_dtype: torch.dtype | None = torch.float32,
        straight_through: bool = False,
        all_outputs: bool = False,
        ops: Mapping[str, Handler] | None = None,
    ) -> None:
        super().__init__()
        self.ops = dict(OPS if ops is None else ops)
        self.all_outputs = all_outputs  # the first output (logits) unless asked, e.g. a detector's score too
        graph = model.graph
        self.float_dtype = float_dtype
        # BPDA (Athalye et al. 2018): rounding-type ops pass gradients through as the identity,
        # so attacks see past non-differentiable layers instead of being stopped by zero gradients.
        self.straight_through = straight_through
        self.params = nn.ParameterDict()
        self.source_dtypes: dict[str, str] = {}
        self._param_keys: dict[str, str] = {}
        self._static: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            array = numpy_helper.to_array(init)
            if init.data_type in FLOAT_TYPES:
                key = f"p{len(self._param_keys)}"
                tensor = torch.from_numpy(np.array(array, dtype=np.float32 if float_dtype else array.dtype))
                if float_dtype is not None:
                    tensor = tensor.to(float_dtype)
                # Weights are fixed; gradients flow to the input (attacks), not to the graph.
                self.params[key] = nn.Parameter(tensor, requires_grad=False)
                self._param_keys[init.name] = key
                self.source_dtypes[init.name] = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name
            else:
                self._static[init.name] = array
        initializer_names = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializer_names]
        self.output_names = [o.name for o in graph.output]
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n), n.name) for n in graph.node]
        shapes = {init.name: tuple(init.dims) for init in graph.initializer if init.data_type in FLOAT_TYPES}
        # The weighted layers in graph order, with their weight shapes: what re-export maps its names back to
        # (exporters.float_onnx.keep_source_names), so plans and fallback notes name the user's own layers.
        self.source_weighted_nodes = [
            (name, shapes[ins[1]])
            for op, ins, _, _, name in self.nodes
            if op in WEIGHTED_OPS and len(ins) > 1 and ins[1] in shapes
        ]
        missing = sorted({op for op, *_ in self.nodes if op not in self.ops})
        if missing:
            raise UserError(
                f"the ONNX graph uses ops deploy-robust cannot run in torch: {', '.join(missing)} "
                f"(supported: {', '.join(sorted(self.ops))})"
            )
        self._fold_constants()

    def _fold_constants(self) -> None:
        """Runs once, here, every node of a FOLDABLE type whose inputs are all initializers (a quantized weight's
        DequantizeLinear), keeping its float result as a parameter. The same handler computes the same values, so
        the graph's outputs are unchanged; what changes is that every forward pass no longer dequantizes every
        weight again, and that the weights are parameters `module.to(memory_format=...)` lays out, where a
        weight computed afresh stayed contiguous beside a channels-last input (the twin of an INT8 ResNet-18 then
        ran no faster in channels-last than in NCHW)."""
        kept = []
        for op, ins, outs, attrs, name in self.nodes:
            constant = all(i in self._static or i in self._param_keys for i in ins if i)
            if op not in FOLDABLE or not constant or len(outs) != 1:
                kept.append((op, ins, outs, attrs, name))
                continue
            args = [None if not i else self._static[i] if i in self._static else self.params[self._param_keys[i]]
                    for i in ins]  # fmt: skip
            value = self._run_node(op, args, attrs, name)
            key = f"p{len(self._param_keys)}"
            self.params[key] = nn.Parameter(value.detach().clone(), requires_grad=False)
            self._param_keys[outs[0]] = key
        self.nodes = kept

    def _run_node(self, op: str, args: list[Value], attrs: dict[str, Any], name: str) -> Value:
        """One node's handler, with the settings every handler may read beside the node's own attributes."""
        return self.ops[op](args, dict(attrs, _float_dtype=self.float_dtype, _node=name, _op=op,
                                       _ste=self.straight_through))  # fmt: skip

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        env: dict[str, Value] = dict(zip(self.input_names, inputs))
        env.update(self._static)
        for onnx_name, key in self._param_keys.items():
            env[onnx_name] = self.params[key]
        for op, ins, outs, attrs, name in self.nodes:
            result = self._run_node(op, [env[i] if i else None for i in ins], attrs, name)
            if not isinstance(result, tuple):
                result = (result,)
            env.update(zip(outs, result))
        if self.all_outputs:
            return tuple(env[name] for name in self.output_names)
        return env[self.output_names[0]]


def is_static(v: Value) -> bool:
    return not isinstance(v, torch.Tensor)


def as_tensor(v: Value) -> torch.Tensor:
    """A static value as a tensor (a copy: initializer arrays are read-only)."""
    return torch.from_numpy(np.array(v))


def as_ints(v: Value) -> list[int]:
    return [int(i) for i in (v.tolist() if hasattr(v, "tolist") else v)]
