"""export_bundle: the bundle it writes, its manifest, determinism and refusals."""

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy_robust.bundle import open_bundle
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import SpecOverrides, load_model
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny

SPEC = InputSpec((3, 16, 16), 5, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _reference(module, x):
    with torch.no_grad():
        return module(
            (torch.from_numpy(x) - torch.tensor(SPEC.mean).view(1, -1, 1, 1)) / torch.tensor(SPEC.std).view(1, -1, 1, 1)
        ).numpy()


def _loaded(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(make_tiny().state_dict(), path)
    arch = tmp_path / "arch.py"
    arch.write_text(
        "from tests.conftest import make_tiny\n\ndef build(num_classes=5):\n    return make_tiny(num_classes=num_classes)\n"
    )
    return load_model(path, f"{arch}:build", overrides=SpecOverrides(shape=(3, 16, 16), mean=SPEC.mean, std=SPEC.std))


def test_same_model_and_seed_give_byte_identical_bundles(tmp_path):
    loaded = _loaded(tmp_path)
    a = export_bundle(loaded, tmp_path / "a", ExportOptions(seed=3))
    b = export_bundle(loaded, tmp_path / "b", ExportOptions(seed=3))
    for name in ("model.onnx", "manifest.json"):
        assert (
            hashlib.sha256((a.path / name).read_bytes()).digest()
            == hashlib.sha256((b.path / name).read_bytes()).digest()
        )


def test_bundle_manifest_records_what_is_needed(tmp_path):
    bundle = open_bundle(
        export_bundle(_loaded(tmp_path), tmp_path / "b", ExportOptions("fp16", "tensorrt", seed=5)).path
    )
    m = bundle.manifest
    assert m.schema_version == 2 and m.seed == 5 and m.target == "tensorrt"
    assert m.input.mean == SPEC.mean and m.document["input"]["normalization_folded"]
    assert m.model.sha256 == hashlib.sha256(bundle.model_path.read_bytes()).hexdigest()
    assert m.files == {"model.onnx": m.model.sha256}
    assert m.precision.mode == "fp16"
    assert [layer["name"] for layer in m.precision.layers] == ["conv", "bn", "conv2", "fc"]
    assert all(layer["precision"] == "fp16" for layer in m.precision.layers)
    assert {"torch", "onnx", "onnxruntime", "deploy_robust"} <= set(m.tools)
    assert m.source["format"] == "state_dict" and len(m.source["sha256"]) == 64
    onnx.checker.check_model(onnx.load(str(bundle.model_path)), full_check=True)


def test_unknown_precision_and_target(tmp_path):
    loaded = _loaded(tmp_path)
    with pytest.raises(UserError, match="--precision must be one of"):
        export_bundle(loaded, tmp_path / "x", ExportOptions("int3"))
    with pytest.raises(UserError, match="--target must be one of"):
        export_bundle(loaded, tmp_path / "x", ExportOptions("fp32", "tpu"))
    assert not (tmp_path / "x").exists()


def test_onnx_input_round_trips_through_the_interpreter(tmp_path):
    path = tmp_path / "user.onnx"
    model = make_tiny()
    torch.onnx.export(
        model, (torch.rand(2, 3, 16, 16),), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
    )
    loaded = load_model(path, overrides=SpecOverrides(mean=SPEC.mean, std=SPEC.std))
    bundle = export_bundle(loaded, tmp_path / "b")
    x = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    session = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x})[0] - _reference(model, x)).max() <= 1e-4


@pytest.mark.parametrize("choice", ["full", "reduced", "auto"])
def test_ort_cpu_int8_weight_range_is_chosen_recorded_and_run_exactly(tmp_path, digits_checkpoint, choice):
    from onnx import numpy_helper

    from deploy_robust.cpu import u8s8_saturates
    from deploy_robust.data import load_dataset
    from deploy_robust.quant.twin import twin_module
    from deploy_robust.runtimes import create_runner

    loaded = load_model(digits_checkpoint, "digits_cnn")
    bundle = export_bundle(
        loaded, tmp_path / choice, ExportOptions("int8", int8_weights=choice), calib=load_dataset("digits:train")
    )
    weights = bundle.manifest.precision.int8_weights
    resolved = {"auto": "reduced" if u8s8_saturates() else "full"}.get(choice, choice)
    assert weights["requested"] == choice and weights["range"] == resolved
    levels = 127 if resolved == "full" else 63
    model = onnx.load(str(bundle.model_path))
    largest = max(
        int(np.abs(numpy_helper.to_array(i)).max())
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    )
    assert weights["levels"] == levels and largest <= levels and (levels == 63 or largest > 63)
    runner = create_runner("ort-cpu", bundle)
    # fused integer kernels where they are exact on this CPU, else unfused Q/DQ (exact, slower)
    assert runner.optimization == ("basic" if resolved == "full" and u8s8_saturates() else "all")
    x = load_dataset("digits:test").take(100).as_float()
    twin = twin_module(bundle.model_path, float_dtype=None)(torch.from_numpy(x)).detach().numpy()
    engine = runner.infer(x)
    assert (engine.argmax(1) == twin.argmax(1)).mean() >= 0.99 and np.abs(engine - twin).max() < 0.05 * np.abs(
        twin
    ).max()
