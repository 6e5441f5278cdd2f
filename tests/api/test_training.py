"""api.train and api.defensive_quantize as library calls: options checked when made, a model file written."""

import pytest
import torch

from deploy_robust.api import (
    DefensiveQuantizationRequest,
    ModelOptions,
    TrainingOptions,
    TrainRequest,
    defensive_quantize,
    train,
)
from deploy_robust.api.training import parse_bits
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.model.model_file import MODEL_KEY


def test_training_options_are_checked_when_made():
    with pytest.raises(UserError, match="--adv pgd needs --eps"):
        TrainingOptions()
    with pytest.raises(UserError, match="--epochs must be >= 1"):
        TrainRequest("digits_cnn", "digits:train", "m.pt", TrainingOptions(epochs=0, adv="none"))
    assert TrainingOptions(adv="none").perturb() is None
    assert TrainingOptions(adv="fgsm", eps=0.1).perturb() is not None


def test_train_returns_its_module_and_writes_a_model_file_that_loads_without_arch(tmp_path):
    out = tmp_path / "digits.pt"
    messages = []
    result = train(
        TrainRequest("digits_cnn", "digits:train", out, TrainingOptions(epochs=1, adv="none")), messages.append
    )
    assert result.written == [out] and messages[0].startswith("training digits_cnn")
    saved = torch.load(out, weights_only=True)
    assert saved[MODEL_KEY]["training"] == result.document["training"]
    assert result.document["training"]["processes"] == 1 and len(result.document["training"]["losses"]) == 1
    loaded = load_model(out)
    for name, value in result.model.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[name], value)


@pytest.mark.parametrize(
    ("text", "bits"), [("4/4", (4, 4)), (" 8/2 ", (8, 2)), ("1/4", None), ("4", None), ("9/9", None)]
)
def test_bits_are_w_slash_a_with_2_to_8_each(text, bits):
    if bits is None:
        with pytest.raises(UserError, match="--bits must be W/A"):
            parse_bits(text)
    else:
        assert parse_bits(text) == bits


def test_a_dq_request_is_checked_when_made_and_zero_epochs_is_post_training(digits_checkpoint, tmp_path):
    with pytest.raises(UserError, match="--beta must be >= 0"):
        DefensiveQuantizationRequest("m.pt", "digits:train", "o.pt", "4/4", beta=-1)
    options = TrainingOptions(epochs=0, adv="none")
    request = DefensiveQuantizationRequest(
        digits_checkpoint, "digits:train", tmp_path / "dq.pt", "8/8", options=options, calib_n=64,
        model_options=ModelOptions("digits_cnn"),
    )  # fmt: skip
    assert request.kind == "post-training quantization"
    result = defensive_quantize(request)
    assert result.document["dq"]["w_bits"] == 8 and result.written == [tmp_path / "dq.pt"]
    assert set(result.document["training"]["spectral_norms"]) and result.model is not None
