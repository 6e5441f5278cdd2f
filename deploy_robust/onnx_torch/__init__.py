"""Run an ONNX graph as a differentiable torch module.

`OnnxGraphModule` interprets the graph node by node with torch ops, so an ONNX model can
be ingested, evaluated with the torch backend, attacked with gradients and re-exported.
Float initializers become parameters; integer initializers and shape arithmetic stay
static Python values, so `torch.export` sees no data-dependent control flow.

Ops are handlers keyed by ONNX op type. `OPS` holds the float ops; the module runs with
the table it is given (`ops=`), so nothing depends on what happens to have been imported:
`deploy_robust.quant.twin.TWIN_OPS` adds QuantizeLinear / DequantizeLinear, and every
caller that runs a Q/DQ graph (the torch backend, verify, detection, ONNX ingestion) goes
through `deploy_robust.quant.twin.twin_module`.
"""

from deploy_robust.onnx_torch import ops, random_ops  # noqa: F401  (they fill OPS on import)
from deploy_robust.onnx_torch.graph import OPS, Handler, OnnxGraphModule, Value, register
from deploy_robust.onnx_torch.random_ops import RANDOM_OPS, graph_is_stochastic

__all__ = ["OPS", "RANDOM_OPS", "Handler", "OnnxGraphModule", "Value", "graph_is_stochastic", "register"]
