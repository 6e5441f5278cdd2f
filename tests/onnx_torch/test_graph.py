"""The interpreter itself: gradients reach the input, an op it cannot run is named, fp16 graphs run as asked."""

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from deploy_robust.errors import UserError
from deploy_robust.onnx_torch import OnnxGraphModule
from tests.onnx_torch.test_ops import CASES, W, _assert_matches_ort, _graph, _x


def test_gradients_flow_to_the_input():
    nodes, inits, shape = CASES["conv_symmetric_pads_stride"]
    module = OnnxGraphModule(_graph(nodes, list(shape), inits=inits))
    x = torch.from_numpy(_x(*shape)).requires_grad_(True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unsupported_op_is_named():
    model = _graph([helper.make_node("NonMaxSuppression", ["x", "x"], ["y"])], [1, 1, 4])
    with pytest.raises(UserError, match="cannot run in torch: NonMaxSuppression"):
        OnnxGraphModule(model)


def test_fp16_graph_runs_at_float32_by_default_or_as_written():
    w16 = W.astype(np.float16)
    nodes = [
        helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["h", "w"], ["c"]),
        helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT),
    ]
    model = _graph(nodes, [1, 3, 5, 5], inits=[("w", w16)])
    x = _x(1, 3, 5, 5)
    full = OnnxGraphModule(model)
    assert full.source_dtypes == {"w": "float16"}
    _assert_matches_ort(model, x, atol=2e-2)
    as_written = OnnxGraphModule(model, float_dtype=None)
    assert as_written.params[as_written._param_keys["w"]].dtype == torch.float16
