import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_robust import zoo
from deploy_robust.bundle import open_bundle
from deploy_robust.errors import UserError
from deploy_robust.export import export_bundle
from deploy_robust.exporters import export_float_onnx
from deploy_robust.ingest import LoadedModel, SpecOverrides, load_model
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny

SPEC = InputSpec((3, 16, 16), 5, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _reference(module, spec, x):
    with torch.no_grad():
        return module((torch.from_numpy(x) - torch.tensor(spec.mean).view(1, -1, 1, 1))
                      / torch.tensor(spec.std).view(1, -1, 1, 1)).numpy()


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
    result = export_float_onnx(model, entry.spec)
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    got, want = _run(result.model, x), _reference(model, entry.spec, x)
    assert np.abs(got - want).max() <= 1e-4 and (got.argmax(1) == want.argmax(1)).all()


def _loaded(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(make_tiny().state_dict(), path)
    arch = tmp_path / "arch.py"
    arch.write_text("from tests.conftest import make_tiny\n\ndef build(num_classes=5):\n    return make_tiny(num_classes=num_classes)\n")
    return load_model(path, f"{arch}:build", overrides=SpecOverrides(shape=(3, 16, 16), mean=SPEC.mean, std=SPEC.std))


def test_same_model_and_seed_give_byte_identical_bundles(tmp_path):
    loaded = _loaded(tmp_path)
    a = export_bundle(loaded, tmp_path / "a", seed=3)
    b = export_bundle(loaded, tmp_path / "b", seed=3)
    for name in ("model.onnx", "manifest.json"):
        assert hashlib.sha256((a.path / name).read_bytes()).digest() == hashlib.sha256((b.path / name).read_bytes()).digest()


def test_bundle_manifest_records_what_is_needed(tmp_path):
    bundle = open_bundle(export_bundle(_loaded(tmp_path), tmp_path / "b", "fp16", "tensorrt", seed=5).path)
    m = bundle.manifest
    assert m["schema_version"] == 1 and m["seed"] == 5 and m["target"] == "tensorrt"
    assert m["input"]["normalization"]["mean"] == list(SPEC.mean) and m["input"]["normalization_folded"]
    assert m["model"]["sha256"] == hashlib.sha256(bundle.model_path.read_bytes()).hexdigest()
    assert m["precision"]["mode"] == "fp16"
    assert [l["name"] for l in m["precision"]["layers"]] == ["conv", "bn", "conv2", "fc"]
    assert all(l["precision"] == "fp16" for l in m["precision"]["layers"])
    assert {"torch", "onnx", "onnxruntime", "deploy_robust"} <= set(m["tools"])
    assert m["source"]["format"] == "state_dict" and len(m["source"]["sha256"]) == 64
    onnx.checker.check_model(onnx.load(str(bundle.model_path)), full_check=True)


def test_unknown_precision_and_target(tmp_path):
    loaded = _loaded(tmp_path)
    with pytest.raises(UserError, match="not available yet"):
        export_bundle(loaded, tmp_path / "x", "int3")
    with pytest.raises(UserError, match="--target must be one of"):
        export_bundle(loaded, tmp_path / "x", "fp32", "tpu")
    assert not (tmp_path / "x").exists()


def test_onnx_input_round_trips_through_the_interpreter(tmp_path):
    path = tmp_path / "user.onnx"
    model = make_tiny()
    torch.onnx.export(model, (torch.rand(2, 3, 16, 16),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    loaded = load_model(path, overrides=SpecOverrides(mean=SPEC.mean, std=SPEC.std))
    bundle = export_bundle(loaded, tmp_path / "b")
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x})[0] - _reference(model, SPEC, x)).max() <= 1e-4
