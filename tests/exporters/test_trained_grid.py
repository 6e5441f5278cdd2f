import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.exporters.float_onnx import export_float_onnx
from deploy_robust.exporters.profiles import get_profile
from deploy_robust.exporters.trained_grid import quantize_on_trained_grid
from deploy_robust.quant.scheme import ActivationParams, TrainedGrid
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.spec import InputSpec


def _model_on_its_grid():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():  # weights on the 3-bit grid k / 3 (levels 3, scale 1/3), as training leaves them
        model[1].weight.copy_(torch.randint(-3, 4, (3, 4)) / 3)
        model[1].bias.zero_()
    return model.eval()


GRID = TrainedGrid({"1": 3}, {"1": 3}, {}, ActivationParams(np.float32(1 / 255), 0, False), {"1": 1 / 3})


def test_weights_are_exported_as_the_trained_integers_and_the_engine_computes_the_trained_model():
    model = _model_on_its_grid()
    graph = export_float_onnx(model, InputSpec((1, 2, 2), 3), "fp32", dynamic_batch=True).model
    result, plan = quantize_on_trained_grid(graph, GRID, get_profile("ort-cpu"))
    onnx.checker.check_model(result.model)
    assert [p.precision for p in plan] == ["int8"] and "trained grid" in plan[0].reason
    ints = [numpy_helper.to_array(i) for i in result.model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert any(set(np.unique(a)) <= set(range(-3, 4)) and a.size == 12 for a in ints)
    x = np.random.default_rng(0).integers(0, 256, (8, 1, 2, 2)).astype(np.float32) / 255  # on the input grid
    got = OnnxRuntimeRunner(result.model.SerializeToString()).infer(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_a_uint8_input_grid_cannot_go_to_a_signed_target():
    graph = export_float_onnx(_model_on_its_grid(), InputSpec((1, 2, 2), 3), "fp32", dynamic_batch=True).model
    with pytest.raises(UserError, match="needs int8 symmetric activations"):
        quantize_on_trained_grid(graph, GRID, get_profile("tensorrt"))
