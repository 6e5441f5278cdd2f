import numpy as np
import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.ingest import SpecOverrides, load_model
from tests.conftest import make_tiny

SHAPE = (3, 16, 16)


def _same_outputs(loaded, model, batch=3):
    x = torch.rand(batch, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reference()(x), model(x), rtol=1e-5, atol=1e-5)


def test_state_dict_with_user_architecture_file(tiny_checkpoint, tiny_arch_file, tiny_model):
    loaded = load_model(tiny_checkpoint, tiny_arch_file, overrides=SpecOverrides(shape=SHAPE))
    assert loaded.spec.shape == SHAPE and loaded.spec.num_classes == 5
    assert loaded.source["format"] == "state_dict" and len(loaded.source["sha256"]) == 64
    assert not loaded.module.training
    _same_outputs(loaded, tiny_model)


def test_user_architecture_needs_an_input_shape(tiny_checkpoint, tiny_arch_file):
    with pytest.raises(UserError, match="--input-shape"):
        load_model(tiny_checkpoint, tiny_arch_file)


def test_state_dict_without_architecture_asks_for_arch(tiny_checkpoint):
    with pytest.raises(UserError, match="pass --arch"):
        load_model(tiny_checkpoint)


def test_zoo_architecture_that_does_not_fit_the_weights(tiny_checkpoint):
    with pytest.raises(UserError, match="do not fit architecture 'resnet18'.*missing keys"):
        load_model(tiny_checkpoint, "resnet18")


def test_torchscript_archive(tmp_path, tiny_model):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(tiny_model), path)
    loaded = load_model(path, overrides=SpecOverrides(shape=SHAPE))
    assert loaded.source["format"] == "torchscript" and loaded.spec.num_classes == 5
    _same_outputs(loaded, tiny_model)


def test_exported_program_with_dynamic_batch_records_its_shape(tmp_path, tiny_model):
    path = tmp_path / "m.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(tiny_model, (torch.rand(4, *SHAPE),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    loaded = load_model(path)
    assert loaded.spec.shape == SHAPE and loaded.fixed_batch is None
    _same_outputs(loaded, tiny_model, batch=3)


def test_exported_program_with_static_batch_keeps_it(tmp_path, tiny_model):
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(tiny_model, (torch.rand(4, *SHAPE),)), path)
    loaded = load_model(path)
    assert loaded.fixed_batch == 4
    _same_outputs(loaded, tiny_model, batch=4)


def test_pickled_module_needs_trust(tmp_path, tiny_model):
    path = tmp_path / "whole.pt"
    torch.save(tiny_model, path)
    with pytest.raises(UserError, match="--trust-pickle"):
        load_model(path, overrides=SpecOverrides(shape=SHAPE))
    loaded = load_model(path, trust_pickle=True, overrides=SpecOverrides(shape=SHAPE))
    assert loaded.source["format"] == "pickled_module"
    _same_outputs(loaded, tiny_model)


def test_onnx_model_runs_in_torch_and_infers_its_spec(tmp_path, tiny_model):
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        tiny_model, (torch.rand(2, *SHAPE),), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
    )
    loaded = load_model(path)
    assert loaded.spec.shape == SHAPE and loaded.spec.num_classes == 5 and loaded.fixed_batch is None
    assert "fc" in [layer["name"] for layer in loaded.layers]  # named from the graph's initializers
    _same_outputs(loaded, tiny_model)


def test_half_precision_weights_are_accepted_and_recorded(tmp_path, tiny_arch_file):
    model = make_tiny().half()
    path = tmp_path / "half.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, tiny_arch_file, overrides=SpecOverrides(shape=SHAPE))
    assert loaded.source["layer_dtypes"]["conv"] == "float16"
    assert {layer["source_dtype"] for layer in loaded.layers} == {"float16"}
    assert next(loaded.module.parameters()).dtype == torch.float32


def test_bfloat16_torchscript_is_upcast(tmp_path, tiny_model):
    path = tmp_path / "bf16.ts"
    torch.jit.save(torch.jit.script(make_tiny().to(torch.bfloat16)), path)
    loaded = load_model(path, overrides=SpecOverrides(shape=SHAPE))
    assert set(loaded.source["layer_dtypes"].values()) == {"bfloat16"}


def test_wrong_input_shape_is_a_user_error(tiny_checkpoint, tiny_arch_file):
    with pytest.raises(UserError, match="does not accept inputs of shape 2x1x16x16"):
        load_model(tiny_checkpoint, tiny_arch_file, overrides=SpecOverrides(shape=(1, 16, 16)))


def test_num_classes_is_checked_against_the_model(tmp_path, tiny_model):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(tiny_model), path)
    with pytest.raises(UserError, match="--num-classes 7 but the model outputs 5"):
        load_model(path, overrides=SpecOverrides(shape=SHAPE, num_classes=7))


def test_num_classes_reaches_a_user_factory(tiny_checkpoint, tiny_arch_file):
    # The factory builds 7 classes, so the 5-class weights no longer fit: reported by name.
    with pytest.raises(UserError, match=r"fc.weight \(5, 32\) vs \(7, 32\)"):
        load_model(tiny_checkpoint, tiny_arch_file, overrides=SpecOverrides(shape=SHAPE, num_classes=7))


def test_arch_flag_is_refused_for_files_that_carry_a_graph(tmp_path, tiny_model):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(tiny_model), path)
    with pytest.raises(UserError, match="--arch is for state_dict"):
        load_model(path, "resnet18")


def test_normalization_overrides_are_applied(tiny_checkpoint, tiny_arch_file, tiny_model):
    loaded = load_model(
        tiny_checkpoint,
        tiny_arch_file,
        overrides=SpecOverrides(shape=SHAPE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    )
    x = torch.rand(2, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.reference()(x).numpy(), tiny_model((x - 0.5) / 0.25).numpy(), atol=1e-5)
