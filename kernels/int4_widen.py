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

from deploy_robust.onnx_ops import MATRIX_OPS


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


# Weight-only INT4 Gemm/MatMul weights up to this many elements are dequantized to float at load: a
# classifier head (at most a few million weights) runs faster as a float Gemm than as ONNX Runtime's
# MatMulNBits at small batches (measured: cifar_cnn_a_adv's 2048 x 100 head made the INT4 bundle 0.13x
# INT8 at batch 1), and the float values are exactly the 4-bit grid's (q * scale is exact in float32).
DEQUANTIZE_AT_LOAD_MAX = 1 << 22


def dequantize_small_int4_gemm_weights(model: onnx.ModelProto) -> int:
    """Replace each block-INT4 DequantizeLinear of a constant Gemm/MatMul weight (<= DEQUANTIZE_AT_LOAD_MAX
    elements) by its float values, in place; returns how many. The numbers the graph computes do not change."""
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    done = 0
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        values = inits[node.input[0]]
        users = consumers.get(node.output[0], [])
        if values.data_type != TensorProto.INT4 or not users or not all(u.op_type in MATRIX_OPS for u in users):
            continue
        if int(np.prod(values.dims)) > DEQUANTIZE_AT_LOAD_MAX:
            continue
        weight = _dequantize(node, inits)
        model.graph.node.remove(node)
        model.graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        done += 1
    if done:
        used = {name for n in model.graph.node for name in n.input}
        keep = [i for i in model.graph.initializer if i.name in used or i.name in {o.name for o in model.graph.output}]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return done


def _dequantize(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> np.ndarray:
    """DequantizeLinear with block_size along `axis` (ONNX opset 21 semantics), in float32."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    zero = (
        numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else 0
    )
    axis, block = attrs.get("axis", 1) % q.ndim, attrs.get("block_size", 0)
    if block:
        scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
        if not np.isscalar(zero):
            zero = np.repeat(zero, block, axis=axis).take(range(q.shape[axis]), axis=axis)
    elif scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if not np.isscalar(zero) else zero
    return ((q - zero) * scale).astype(np.float32)
