from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort

from deploy_robust.kernels import widen_int4_conv_weights
from tests.exporters.test_qdq import SPEC, Residual, _fused_ops, _quantized


def test_widening_keeps_the_numbers_and_enables_the_integer_conv():
    model = _quantized(Residual(), "int4", "ort-cpu")
    assert Counter(_fused_ops(model))["QLinearConv"] == 0  # as stored: dequantize + float conv
    widened = onnx.ModelProto()
    widened.CopyFrom(model)
    assert widen_int4_conv_weights(widened) > 0
    assert _fused_ops(widened)["QLinearConv"] == 4  # every conv (tests.exporters.test_qdq quantizes them all)
    x = np.random.default_rng(0).random((8, *SPEC.shape), dtype=np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]

    np.testing.assert_array_equal(run(model), run(widened))


def test_small_weight_only_int4_heads_become_float_with_the_same_numbers():
    from deploy_robust.kernels import dequantize_small_int4_gemm_weights

    model = _quantized(Residual(), "int4", "ort-cpu")
    assert "MatMulNBits" in _fused_ops(model)  # as stored: ONNX Runtime's 4-bit MatMul for the head
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert dequantize_small_int4_gemm_weights(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert "MatMulNBits" not in _fused_ops(rewritten)
    x = np.random.default_rng(1).random((8, *SPEC.shape), dtype=np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]

    np.testing.assert_allclose(run(model), run(rewritten), rtol=0, atol=1e-5)
