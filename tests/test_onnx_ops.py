from deploy_robust.onnx_ops import QUANTIZABLE_OPS, WEIGHTED_OPS


def test_the_quantizable_ops_are_the_weighted_ops_but_conv_transpose():
    assert set(WEIGHTED_OPS) - set(QUANTIZABLE_OPS) == {"ConvTranspose"}
    assert QUANTIZABLE_OPS == ("Conv", "Gemm", "MatMul")
