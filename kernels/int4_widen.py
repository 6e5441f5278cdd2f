"""INT4 convolution weights at INT8 speed on ONNX Runtime.

A bundle stores conv weights on the 4-bit grid as opset-21 INT4 tensors (about 1/8 of
FP32). ONNX Runtime's CPU kernels fuse DQ -> Conv -> Q into QLinearConv only for 8-bit
weights, and would otherwise dequantize to float and run a float convolution. At load
time we widen each INT4 tensor that feeds a DequantizeLinear into a Conv to INT8: the same
integers, the same scales, so the same numbers, on the fused integer kernel. Block-quantized
INT4 weights of MatMul stay INT4 (ONNX Runtime has its own 4-bit MatMul for those).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def widen_int4_conv_weights(model: onnx.ModelProto) -> int:
    """Rewrite in place; returns how many tensors were widened."""
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    targets = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        if inits[node.input[0]].data_type != TensorProto.INT4:
            continue
        if all(c.op_type == "Conv" for c in consumers.get(node.output[0], [])):
            targets.update(name for name in node.input[::2] if name in inits)  # values and zero point
    for name in targets:
        tensor = inits[name]
        if tensor.data_type != TensorProto.INT4:
            continue
        widened = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.int8), name)
        tensor.CopyFrom(widened)
    return len(targets)
