"""The Q/DQ writer on small synthetic graphs: placement per profile, dtypes, and engine == twin."""

from collections import Counter

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from deploy_robust.calibrators.collect import calibrate
from deploy_robust.data import Dataset
from deploy_robust.exporters import export_float_onnx
from deploy_robust.exporters.profiles import PROFILES
from deploy_robust.exporters.qdq import quantize_model, tensors_to_calibrate
from deploy_robust.exporters.tensorrt_rules import check_tensorrt_rules
from deploy_robust.quant.plan import make_plan
from deploy_robust.quant.twin import twin_module
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny

RNG = np.random.default_rng(0)


class Residual(nn.Module):
    """conv -> relu -> conv (+ identity) -> relu -> conv 1x1 shortcut add -> pool -> fc: the ResNet patterns."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 32, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(8, 32, 1, stride=2)
        self.fc = nn.Linear(32, 4)  # K = 32: one INT4 block

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.conv1(h))
        h = torch.relu(self.conv2(h) + self.shortcut(h))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(h, 1), 1))


SPEC = InputSpec((3, 12, 12), 4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _every_layer(plan):
    """These tests check the profile's Q/DQ forms on every layer: quantize the narrow image-input conv too
    (the ort-cpu plan keeps it FP32 for speed; tests/quant/test_plan.py checks that rule)."""
    return [replace(p, precision=p.requested) if p.reason.startswith("narrow image-input conv") else p for p in plan]


def _quantized(module, precision, target, spec=SPEC):
    from deploy_robust.export import _stores_int4

    torch.manual_seed(0)
    profile = PROFILES[target]
    graph = export_float_onnx(module.eval(), spec).model
    plan = _every_layer(make_plan(graph, precision, target))
    if _stores_int4(plan, profile):  # as the pipeline does: opset 21 only where INT4 is stored
        graph = export_float_onnx(module.eval(), spec, opset=21).model
        plan = _every_layer(make_plan(graph, precision, target))
    data = Dataset(RNG.integers(0, 256, (64, *spec.shape), dtype=np.uint8), RNG.integers(0, 4, 64), "d", 255.0)
    ranges = calibrate(
        graph, tensors_to_calibrate(graph, plan, profile), data, "mse", signed=profile.signed_activations
    )
    return quantize_model(graph, plan, ranges, profile).model


def _engine(model, x, optimize=True):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]


def _fused_ops(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    import tempfile
    import os

    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


@pytest.fixture(scope="module")
def residual_int8():
    return _quantized(Residual(), "int8", "ort-cpu")


def test_ort_cpu_fuses_every_layer_into_integer_kernels(residual_int8):
    ops = _fused_ops(residual_int8)
    assert ops["QLinearConv"] == 4 and ops["QLinearAdd"] == 2 and ops["QGemm"] == 1
    assert "Conv" not in ops and "Relu" not in ops  # ReLUs fold into the zero point


def test_ort_cpu_dtypes(residual_int8):
    inits = {i.name: i for i in residual_int8.graph.initializer}
    for node in residual_int8.graph.node:
        if node.op_type == "QuantizeLinear":
            assert inits[node.input[2]].data_type == TensorProto.UINT8  # U8 activations
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert inits[node.input[0]].data_type in (TensorProto.INT8, TensorProto.INT32)  # S8 weights, S32 bias
            if inits[node.input[0]].data_type == TensorProto.INT8:
                assert np.abs(numpy_helper.to_array(inits[node.input[0]])).max() <= 63  # reduce range


@pytest.mark.parametrize("target", ["ort-cpu", "ort-cuda", "tensorrt"])
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_engine_computes_what_the_twin_computes(target, precision):
    model = _quantized(Residual(), precision, target)
    x = RNG.random((16, *SPEC.shape), dtype=np.float32)
    twin = twin_module(model, float_dtype=None)(torch.from_numpy(x)).detach().numpy()
    from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    # Signed-activation profiles run unfused on the CPU (see runtimes.onnxruntime_session.optimization_level).
    engine = OnnxRuntimeRunner(model.SerializeToString(), optimization="all" if target == "ort-cpu" else "basic").infer(
        x
    )
    assert (engine.argmax(1) == twin.argmax(1)).all()
    assert np.abs(engine - twin).max() < 0.05 * np.abs(twin).max() + 1e-3


def test_tensorrt_placement_follows_its_rules():
    model = _quantized(Residual(), "int8", "tensorrt")
    assert check_tensorrt_rules(model) == []
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    for add in adds:  # exactly one quantized (skip-branch) input per residual Add
        quantized = [i for i in add.input if producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"]
        assert len(quantized) == 1
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            assert not numpy_helper.to_array(inits[node.input[2]]).any()  # zero points 0
    assert model.opset_import[0].version == 17


def test_tensorrt_int4_convs_are_int8_tensors_on_the_4bit_grid():
    model = _quantized(Residual(), "int4", "tensorrt")
    assert check_tensorrt_rules(model) == []
    conv_weights = [i for i in model.graph.initializer if i.name.endswith("weight_quantized") and "fc" not in i.name]
    assert len(conv_weights) == 4 and all(i.data_type == TensorProto.INT8 for i in conv_weights)
    assert all(np.abs(numpy_helper.to_array(i)).max() <= 7 for i in conv_weights)


def test_rule_checker_catches_violations():
    model = _quantized(Residual(), "int8", "ort-cpu")  # U8 activations, Q/DQ on both Add inputs
    problems = check_tensorrt_rules(model)
    assert any("UINT8" in p for p in problems)
    assert any("quantized inputs on a residual Add" in p for p in problems)


def test_int4_is_stored_packed_and_small():
    model = _quantized(Residual(), "int4", "ort-cpu")
    int4 = [i for i in model.graph.initializer if i.data_type == TensorProto.INT4]
    assert int4 and all(len(i.raw_data) == (int(np.prod(i.dims)) + 1) // 2 for i in int4)
    assert model.opset_import[0].version == 21
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMul"] == 1 and ops["Gemm"] == 0  # the Linear became weight-only block INT4


def test_mixed_fp16_layer_gets_casts():
    torch.manual_seed(0)
    graph = export_float_onnx(make_tiny(), InputSpec((3, 16, 16), 5)).model
    import tempfile
    import os

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.yaml")
        open(path, "w").write("default: int8\nlayers:\n  conv2: fp16\n")
        plan = make_plan(graph, "mixed", "ort-cpu", path)
    data = Dataset(RNG.integers(0, 256, (32, 3, 16, 16), dtype=np.uint8), RNG.integers(0, 5, 32), "d", 255.0)
    profile = PROFILES["ort-cpu"]
    ranges = calibrate(graph, tensors_to_calibrate(graph, plan, profile), data, "mse")
    model = quantize_model(graph, plan, ranges, profile).model
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2
    x = RNG.random((4, 3, 16, 16), dtype=np.float32)
    assert np.isfinite(_engine(model, x)).all()
