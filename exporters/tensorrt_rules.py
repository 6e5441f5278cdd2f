"""Static checks that a Q/DQ graph is what TensorRT's explicit quantization runs well and correctly.

Rules (TensorRT developer guide, "Explicit quantization"; TensorRT 10+ takes every precision
decision from the ONNX graph):
  1. Q/DQ are int8 with zero points of 0 (symmetric); INT4 appears only as block-quantized
     Gemm/MatMul weights.
  2. Weights are quantized per output channel: axis 0 for Conv (and Gemm with transB=1),
     axis 1 for MatMul / Gemm without transB.
  3. Dequantized activations feed only weighted ops (Conv, Gemm, MatMul) and residual Adds.
  4. A residual Add has exactly one quantized input (the skip branch; the other fuses into the Conv).
  5. Nothing quantized flows into Softmax, Reshape, Concat, Flatten, Transpose and friends.
  6. Opset 17, or 21 only when INT4 weights are present.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, numpy_helper

from deploy_robust.onnx_ops import QUANTIZABLE_OPS


def check_tensorrt_rules(model: onnx.ModelProto) -> list[str]:
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[str] = []
    has_int4 = any(i.data_type == TensorProto.INT4 for i in graph.initializer)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset != 17 and not (opset == 21 and has_int4):
        problems.append(f"opset {opset}: expected 17 (21 only with INT4 weights)")
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        values = inits.get(node.input[0])
        dtype = zero.data_type if zero is not None else (values.data_type if values is not None else TensorProto.UINT8)
        blocked = attrs.get("block_size", 0) > 0
        if dtype == TensorProto.INT4 and not blocked:
            problems.append(f"{node.name}: INT4 outside block-quantized Gemm/MatMul weights")
        elif dtype not in (TensorProto.INT8, TensorProto.INT4, TensorProto.INT32):
            problems.append(f"{node.name}: {TensorProto.DataType.Name(dtype)} quantization; TensorRT needs INT8")
        if zero is not None and numpy_helper.to_array(zero).astype("int64").any():
            problems.append(f"{node.name}: non-zero zero point")
        if node.op_type == "DequantizeLinear" and values is not None and values.data_type != TensorProto.INT32:
            problems += _check_weight(node, attrs, consumers.get(node.output[0], []), values)
        if node.op_type == "DequantizeLinear" and values is None:
            for user in consumers.get(node.output[0], []):
                if user.op_type not in QUANTIZABLE_OPS and user.op_type != "Add":
                    problems.append(f"{node.name}: quantized activation flows into {user.op_type} ({user.name})")
    for node in graph.node:
        if node.op_type == "Add":
            quantized = [
                i
                for i in node.input
                if i in producer and producer[i].op_type == "DequantizeLinear" and producer[i].input[0] not in inits
            ]
            if len(quantized) > 1:
                problems.append(f"{node.name}: {len(quantized)} quantized inputs on a residual Add (expected 1)")
    return problems


def _check_weight(dq: onnx.NodeProto, attrs: dict, users: list[onnx.NodeProto], values: onnx.TensorProto) -> list[str]:
    problems = []
    for user in users:
        if user.op_type not in QUANTIZABLE_OPS:
            problems.append(f"{dq.name}: dequantized weight feeds {user.op_type}")
            continue
        if attrs.get("block_size", 0):
            continue
        trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
        expected = 0 if user.op_type == "Conv" or (user.op_type == "Gemm" and trans_b) else 1
        scale_is_vector = len(values.dims) > 1
        if scale_is_vector and attrs.get("axis", 1) != expected:
            problems.append(
                f"{dq.name}: weight quantized along axis {attrs.get('axis', 1)}, expected {expected} for {user.op_type}"
            )
    return problems
