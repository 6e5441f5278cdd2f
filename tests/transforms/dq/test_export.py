"""DQ bundles: exact trained grids on ONNX Runtime's integer kernels, and a twin that matches the engine."""

import numpy as np
import onnx
import pytest
import onnxruntime as ort
import torch
from onnx import numpy_helper

from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.normalize import with_normalization
from deploy_robust.quant.twin import twin_module
from deploy_robust.runtimes import create_runner
from deploy_robust.model.model_file import save_model_file
from deploy_robust.transforms.dq import DQRequest, defensive_quantization
from deploy_robust.verify.attacks import pgd
from deploy_robust.verify.threat import ThreatModel
from tests.conftest import shared_path


def _optimized_ops(model_path, tmp_path) -> dict[str, int]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


# How far the engine may differ from the trained model, and why. The integer kernels compute each
# conv's int32 accumulator exactly, but requantize it (scale multiply, round to the next activation
# level) with their own float arithmetic: AVX2, AVX-512 VNNI and AMX paths of ONNX Runtime multiply
# and round in different orders. A value within float rounding of a level boundary (x.5 steps) can
# therefore land on either neighbouring level, and that one-step flip propagates to the logits (0.32
# measured on a Xeon with AMX, 0 on AVX2-only EPYC). So: images none of whose activations lies within
# TIE_STEPS of a boundary (about the float32 error of a conv accumulated in torch) must match to
# 1e-3; the rest (near-ties) may differ, and must be rare.
TIE_STEPS = 1e-5
MAX_NEAR_TIE_FRACTION = 0.05


def _near_tie_images(module, spec, x: torch.Tensor) -> np.ndarray:
    """Per image: does any activation of the trained model sit within TIE_STEPS of a rounding boundary?"""
    from deploy_robust.transforms.dq.quantizers import ActivationQuantizer

    near = torch.zeros(len(x), dtype=torch.bool)

    def hook(quantizer, inputs, _output):
        nonlocal near
        v = torch.clamp(inputs[0], 0.0, float(quantizer.bound)) / quantizer.scale()
        distance = ((v - torch.floor(v)) - 0.5).abs().flatten(1).min(1).values
        near |= distance < TIE_STEPS

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, ActivationQuantizer)]
    try:
        with torch.no_grad():
            with_normalization(module, spec)(x)
    finally:
        for h in handles:
            h.remove()
    return near.numpy()


def _assert_engine_computes_the_trained_model(engine, trained, near_tie) -> None:
    assert near_tie.mean() <= MAX_NEAR_TIE_FRACTION, f"{near_tie.sum()} of {len(near_tie)} images sit on a tie"
    error = np.abs(engine - trained).max(axis=1)
    off = np.flatnonzero((error >= 1e-3) & ~near_tie)
    assert off.size == 0, f"images {off[:5]} differ by {error[off[:5]]} with no activation near a tie"


def _dq_bundle(loaded, train, request, tmp_path, name):
    module, config, _ = defensive_quantization(loaded, train, request)
    path = save_model_file(tmp_path / f"{name}.pt", module, loaded.source["arch"], loaded.spec, {}, dq=config.to_json())
    reloaded = load_model(path)
    return module, reloaded, export_bundle(reloaded, tmp_path / name, ExportOptions("int8"))


def test_a_dq_bundle_runs_its_trained_grid_on_integer_kernels(digits_checkpoint, tmp_path):
    loaded = load_model(digits_checkpoint, "digits_cnn")
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    module, reloaded, bundle = _dq_bundle(loaded, train, DQRequest(4, 3, beta=1e-3, epochs=2), tmp_path, "dq")
    assert reloaded.transforms["dq"]["w_bits"] == 4 and bundle.manifest.transforms["dq"]["a_bits"] == 3
    graph = onnx.load(str(bundle.model_path))
    clips = [numpy_helper.to_array(i) for i in graph.graph.initializer if i.name.endswith("_clip_max")]
    assert len(clips) == 3 and all(int(c) == 7 for c in clips)  # 3-bit activations on uint8
    ops = _optimized_ops(bundle.model_path, tmp_path)
    assert ops.get("QLinearConv") == 2 and "Conv" not in ops and "Relu" not in ops, ops
    x = torch.from_numpy(test.as_float())
    engine = create_runner("ort-cpu", bundle).infer(x.numpy())
    with torch.no_grad():
        trained = with_normalization(module, loaded.spec)(x).numpy()
        twin_logits = twin_module(bundle.model_path)(x).numpy()
    assert (engine.argmax(1) == twin_logits.argmax(1)).mean() >= 0.995
    # the engine computes what was trained: same grids, same int32 bias rounding (ties aside, see above)
    _assert_engine_computes_the_trained_model(engine, trained, _near_tie_images(module, loaded.spec, x))
    # adversarial examples crafted on the twin: the engine still computes what the twin computes
    twin = twin_module(bundle.model_path)
    x_adv = pgd(twin, x[:200], torch.from_numpy(test.labels[:200]).long(), ThreatModel("linf", 0.1), steps=10)
    with torch.no_grad():
        adv_twin = twin(x_adv).numpy()
    adv_engine = create_runner("ort-cpu", bundle).infer(x_adv.numpy())
    assert (adv_engine.argmax(1) == adv_twin.argmax(1)).mean() >= 0.995


def test_dq_models_refuse_targets_their_grid_does_not_fit(digits_checkpoint, tmp_path):
    loaded = load_model(digits_checkpoint, "digits_cnn")
    train = load_dataset("digits:train")
    _, uint8_input, _ = _dq_bundle(loaded, train, DQRequest(8, 7, epochs=0), tmp_path, "ptq")
    with pytest.raises(UserError, match="--input-grid int8"):
        export_bundle(uint8_input, tmp_path / "trt", ExportOptions("int8", "tensorrt"))
    _, eight_bit, _ = _dq_bundle(loaded, train, DQRequest(8, 8, epochs=0, input_signed=True), tmp_path, "ptq8")
    with pytest.raises(UserError, match="7 activation bits"):
        export_bundle(eight_bit, tmp_path / "cuda", ExportOptions("int8", "ort-cuda"))
    assert not (tmp_path / "trt").exists() and not (tmp_path / "cuda").exists()


@pytest.mark.parametrize("target", ["ort-cuda", "tensorrt"])
def test_an_int8_input_dq_model_exports_its_grid_to_signed_targets(digits_checkpoint, tmp_path, target):
    loaded = load_model(digits_checkpoint, "digits_cnn")
    module, config, _ = defensive_quantization(
        loaded, load_dataset("digits:train"), DQRequest(4, 3, epochs=0, input_signed=True)
    )
    path = save_model_file(tmp_path / "dq.pt", module, "digits_cnn", loaded.spec, {}, dq=config.to_json())
    bundle = export_bundle(
        load_model(path), tmp_path / target, ExportOptions("int8", target)
    )  # tensorrt: the rule checker ran
    graph = onnx.load(str(bundle.model_path))
    zero_points = [numpy_helper.to_array(i) for i in graph.graph.initializer if "zero_point" in i.name]
    assert all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points)
    ops = {n.op_type for n in graph.graph.node}
    assert ("Clip" in ops) == (target == "ort-cuda") and ("Min" in ops) == (target == "tensorrt")
    x = torch.from_numpy(load_dataset("digits:test").as_float())
    engine = create_runner("ort-cpu", bundle).infer(x.numpy())  # the same graph on ONNX Runtime's CPU provider
    with torch.no_grad():
        trained = with_normalization(module, loaded.spec)(x).numpy()
        twin = twin_module(bundle.model_path)(x).numpy()
    assert (engine.argmax(1) == twin.argmax(1)).mean() >= 0.995
    _assert_engine_computes_the_trained_model(engine, trained, _near_tie_images(module, loaded.spec, x))


def test_post_training_w4a4_on_the_shared_mnist_model_matches_its_twin(tmp_path):
    loaded = load_model(shared_path("models", "mnist_cnn_a_adv.model"))
    train = load_dataset(shared_path("datasets", "mnist_train_first17435.npz"), split="train")
    test = load_dataset(shared_path("datasets", "mnist_test.npz")).take(2000)
    module, _, bundle = _dq_bundle(loaded, train, DQRequest(4, 4, epochs=0), tmp_path, "mnist_w4a4")
    x = test.as_float()
    engine = create_runner("ort-cpu", bundle).infer(x)
    with torch.no_grad():
        twin = twin_module(bundle.model_path)(torch.from_numpy(x)).numpy()
        trained = with_normalization(module, loaded.spec)(torch.from_numpy(x)).numpy()
    assert (engine.argmax(1) == twin.argmax(1)).mean() >= 0.995
    _assert_engine_computes_the_trained_model(
        engine, trained, _near_tie_images(module, loaded.spec, torch.from_numpy(x))
    )
