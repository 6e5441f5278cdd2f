import numpy as np
import torch

from deploy_robust.onnx_torch import OPS as FLOAT_OPS
from deploy_robust.quant.twin import TWIN_OPS as OPS


def test_the_float_interpreter_knows_no_quantizers_and_the_twin_table_adds_them():
    assert "QuantizeLinear" not in FLOAT_OPS and "DequantizeLinear" not in FLOAT_OPS
    assert set(OPS) == set(FLOAT_OPS) | {"QuantizeLinear", "DequantizeLinear"}


def test_quantize_rounds_half_to_even_and_saturates_like_onnx():
    q = OPS["QuantizeLinear"]
    x = torch.tensor([0.5, 1.5, 2.5, -3.0, 300.0])
    out = q([x, np.float32(1.0), np.uint8(0)], {})
    assert out.tolist() == [0.0, 2.0, 2.0, 0.0, 255.0]


def test_straight_through_gradient_is_clipped_outside_the_range():
    q, dq = OPS["QuantizeLinear"], OPS["DequantizeLinear"]
    x = torch.tensor([0.3, 100.0, -50.0], requires_grad=True)
    y = dq([q([x, np.float32(0.1), np.int8(0)], {}), np.float32(0.1), np.int8(0)], {})
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0]


def test_per_axis_and_blocked_dequantize():
    dq = OPS["DequantizeLinear"]
    q = np.array([[1, 2], [3, 4]], np.int8)
    out = dq([q, np.array([1.0, 10.0], np.float32), np.zeros(2, np.int8)], {"axis": 0})
    assert out.tolist() == [[1, 2], [30, 40]]
    blocked = dq([np.ones((4, 1), np.int8), np.array([[1.0], [2.0]], np.float32)], {"axis": 0, "block_size": 2})
    assert blocked.reshape(-1).tolist() == [1, 1, 2, 2]


def test_the_attack_graph_passes_rounding_straight_through_and_returns_every_output():
    from onnx import TensorProto, helper

    from deploy_robust.quant.twin import attack_graph, twin_module

    graph = helper.make_graph(
        [helper.make_node("Round", ["x"], ["r"]), helper.make_node("Neg", ["x"], ["n"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("n", TensorProto.FLOAT, [1, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = torch.tensor([[0.2, 1.7, -0.6, 2.5]], requires_grad=True)
    rounded, negated = attack_graph(model)(x)
    assert torch.equal(rounded, torch.round(x)) and torch.equal(negated, -x)
    (grad,) = torch.autograd.grad(rounded.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))  # straight through (BPDA)
    plain = twin_module(model)(x)  # the logits only, rounding as autograd has it
    (grad,) = torch.autograd.grad(plain.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))


def test_a_quantized_weight_is_dequantized_once_into_a_parameter_that_follows_the_memory_layout():
    from onnx import TensorProto, helper, numpy_helper

    from deploy_robust.quant.twin import attack_graph

    rng = np.random.default_rng(0)
    w_q, w_scale = rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8), rng.uniform(0.01, 0.02, 8).astype(np.float32)
    initializers = [
        numpy_helper.from_array(w_q, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
        numpy_helper.from_array(np.float32(0.02), "x_scale"),
        numpy_helper.from_array(np.uint8(128), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8, 6, 6])],
        initializers,
    )
    twin = attack_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert [op for op, *_ in twin.nodes] == ["QuantizeLinear", "DequantizeLinear", "Conv"]  # the weight's DQ ran once
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    x_dq = (torch.clamp(torch.round(x.detach() / 0.02) + 128, 0, 255) - 128) * torch.tensor(0.02)
    weight = torch.from_numpy(w_q.astype(np.float32)) * torch.from_numpy(w_scale).reshape(-1, 1, 1, 1)
    (y,) = twin(x)
    assert torch.equal(y.detach(), torch.nn.functional.conv2d(x_dq, weight, padding=1))  # the same values
    (grad,) = torch.autograd.grad(y.sum(), x)  # straight through the input's rounding, none into the weight
    assert grad.abs().sum() > 0 and not any(p.requires_grad for p in twin.parameters())
    twin.to(memory_format=torch.channels_last)
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in twin.parameters())  # fmt: skip
