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
    run = lambda m: ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(run(model), run(widened))
