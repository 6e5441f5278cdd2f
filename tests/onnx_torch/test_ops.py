"""One small graph per op, run by ONNX Runtime and by OnnxGraphModule: the same numbers."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from deploy_robust.onnx_torch import OnnxGraphModule

RNG = np.random.default_rng(0)


def _graph(nodes, x_shape, out_shape=None, inits=(), opset=17):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _assert_matches_ort(model, x, atol=1e-5):
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = OnnxGraphModule(model)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)

CASES = {
    "conv_symmetric_pads_stride": (
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])],
        [("w", W), ("b", B)],
        (2, 3, 9, 9),
    ),
    "conv_asymmetric_pads": (
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 1, 0])],
        [("w", W)],
        (2, 3, 8, 8),
    ),
    "conv_same_upper_strided": (
        [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
        [("w", W)],
        (1, 3, 9, 9),
    ),
    "conv_dilated": (
        [helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], pads=[2, 2, 2, 2])],
        [("w", W)],
        (1, 3, 9, 9),
    ),
    "conv_grouped": (
        [helper.make_node("Conv", ["x", "w"], ["y"], group=3, pads=[1, 1, 1, 1])],
        [("w", _x(6, 1, 3, 3))],
        (1, 3, 6, 6),
    ),
    "maxpool_ceil_pads": (
        [
            helper.make_node(
                "MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1
            )
        ],
        [],
        (2, 3, 8, 8),
    ),
    "maxpool_asymmetric": (
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])],
        [],
        (1, 2, 5, 5),
    ),
    "avgpool_exclude_pad": (
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        [],
        (1, 2, 6, 6),
    ),
    "global_avgpool": ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [], (2, 3, 5, 5)),
    "batchnorm": (
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
        [("s", _x(3)), ("b", _x(3)), ("m", _x(3)), ("v", np.abs(_x(3)) + 0.5)],
        (2, 3, 4, 4),
    ),
    "gemm_transb_alpha_beta": (
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
        [("w", _x(7, 5)), ("c", _x(7))],
        (3, 5),
    ),
    "matmul_add": (
        [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "c"], ["y"])],
        [("w", _x(5, 4)), ("c", _x(4))],
        (3, 5),
    ),
    "activations": (
        [
            helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
            helper.make_node("Sigmoid", ["a"], ["b"]),
            helper.make_node("Tanh", ["b"], ["c"]),
            helper.make_node("Softmax", ["c"], ["y"], axis=1),
        ],
        [],
        (3, 6),
    ),
    "clip_inputs": (
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        [("lo", np.float32(-0.5)), ("hi", np.float32(0.7))],
        (2, 9),
    ),
    "flatten_transpose": (
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("Flatten", ["t"], ["y"], axis=1),
        ],
        [],
        (2, 3, 2, 2),
    ),
    "reduce_mean_axes_attr": (
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)],
        [],
        (2, 3, 4, 4),
    ),
    "pad_constant": (
        [helper.make_node("Pad", ["x", "p", "v"], ["y"])],
        [("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)), ("v", np.float32(0.5))],
        (1, 2, 3, 3),
    ),
    "sub_div_mul": (
        [
            helper.make_node("Sub", ["x", "m"], ["a"]),
            helper.make_node("Div", ["a", "s"], ["b"]),
            helper.make_node("Mul", ["b", "s"], ["y"]),
        ],
        [("m", _x(1, 3, 1, 1)), ("s", np.abs(_x(1, 3, 1, 1)) + 0.1)],
        (2, 3, 4, 4),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case):
    nodes, inits, x_shape = CASES[case]
    _assert_matches_ort(_graph(nodes, list(x_shape), inits=inits), _x(*x_shape))


def test_dynamic_reshape_from_shape_arithmetic():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape: what exporters emit for x.view(x.size(0), -1).
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [("zero", np.array(0, np.int64)), ("axes", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))]
    model = _graph(nodes, ["N", 3, 4, 4], inits=inits)
    for batch in (1, 5):
        _assert_matches_ort(model, _x(batch, 3, 4, 4))
