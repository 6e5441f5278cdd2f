import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_robust import zoo
from deploy_robust.exporters import export_float_onnx
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny

SPEC = InputSpec((3, 16, 16), 5, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _reference(module, spec, x):
    with torch.no_grad():
        return module(
            (torch.from_numpy(x) - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)
        ).numpy()


def test_fp32_matches_torch_with_normalization_folded_in():
    model = make_tiny()
    result = export_float_onnx(model, SPEC)
    assert [i.name for i in result.model.graph.input] == ["input"]
    assert [o.name for o in result.model.graph.output] == ["logits"]
    assert result.model.opset_import[0].version == 17
    x = np.random.default_rng(0).random((7, 3, 16, 16), dtype=np.float32)
    got, want = _run(result.model, x), _reference(model, SPEC, x)
    assert np.abs(got - want).max() <= 1e-4 and (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_dynamic_batch_accepts_any_size(batch):
    result = export_float_onnx(make_tiny(), SPEC)
    assert _run(result.model, np.zeros((batch, 3, 16, 16), np.float32)).shape == (batch, 5)


def test_static_batch_is_fixed_in_the_graph():
    result = export_float_onnx(make_tiny(), SPEC, fixed_batch=4)
    dim = result.model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 4


def test_fp16_keeps_a_float32_interface_and_agrees():
    model = make_tiny()
    result = export_float_onnx(model, SPEC, "fp16")
    assert result.model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # Every weight is fp16; only the folded normalization constants (one per channel) stay fp32.
    weights = [i for i in result.model.graph.initializer if np.prod(i.dims) > 3]
    assert weights and {i.data_type for i in weights} == {onnx.TensorProto.FLOAT16}
    x = np.random.default_rng(1).random((64, 3, 16, 16), dtype=np.float32)
    got, want = _run(result.model, x), _reference(model, SPEC, x)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 5e-2 and (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_torchscript_modules_use_the_torchscript_exporter():
    scripted = torch.jit.script(make_tiny())
    result = export_float_onnx(scripted, SPEC)
    assert result.exporter == "torchscript"
    x = np.random.default_rng(2).random((2, 3, 16, 16), dtype=np.float32)
    assert np.abs(_run(result.model, x) - _reference(make_tiny(), SPEC, x)).max() <= 1e-4


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "vgg16_bn", "wrn28_4", "resnet2b"])
def test_cifar_architectures_export_with_parity(name):
    entry = zoo.get(name)
    torch.manual_seed(0)
    model = entry.build().eval()
    result = export_float_onnx(model, entry.train_spec)
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    got, want = _run(result.model, x), _reference(model, entry.train_spec, x)
    assert np.abs(got - want).max() <= 1e-4 and (got.argmax(1) == want.argmax(1)).all()


def test_an_ingested_onnx_graph_keeps_its_layer_names(tmp_path):
    from deploy_robust.ingest import load_model

    source = tmp_path / "user.onnx"
    torch.onnx.export(
        make_tiny(),
        (torch.rand(2, *SPEC.shape),),
        str(source),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
    )
    names = [n.name for n in onnx.load(str(source)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert names == ["/conv/Conv", "/conv2/Conv", "/fc/Gemm"]
    loaded = load_model(source)
    exported = export_float_onnx(loaded.module, loaded.spec).model
    assert [n.name for n in exported.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")] == names
    # a module that is not an ingested graph keeps the exporter's names
    plain = export_float_onnx(make_tiny(), SPEC).model
    assert "/fc/Gemm" not in {n.name for n in plain.graph.node}
