import pickle
from collections import OrderedDict

import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.model.checkpoint import extract_state_dict, load_state_dict, read_checkpoint
from tests.conftest import make_tiny


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _RunsCodeWhenUnpickled(marker)}, f, protocol=2)
    with pytest.raises(UserError, match="--trust-pickle"):
        read_checkpoint(path)
    assert not marker.exists()


def test_whole_module_pickle_names_the_class_and_the_opt_in(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(make_tiny(), path)
    with pytest.raises(UserError) as info:
        read_checkpoint(path)
    assert "TinyNet" in str(info.value) and "--trust-pickle" in str(info.value)
    assert isinstance(read_checkpoint(path, trust_pickle=True), torch.nn.Module)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 1},
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": [sd], "acc": 0.5},
        lambda sd: [sd],
    ],
)
def test_state_dict_found_in_the_usual_wrappings(wrap):
    sd = make_tiny().state_dict()
    found = extract_state_dict(wrap(sd))
    assert list(found) == list(sd)


def test_no_state_dict_is_a_user_error():
    with pytest.raises(UserError, match="no state_dict found"):
        extract_state_dict({"epoch": 3, "lr": 0.1})


def test_misfit_names_missing_unexpected_and_mismatched_keys():
    model = make_tiny()
    sd = OrderedDict(model.state_dict())
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(UserError) as info:
        load_state_dict(make_tiny(), sd, "tiny")
    message = str(info.value)
    assert "missing keys: fc.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "conv.weight (4, 3, 3, 3) vs (8, 3, 3, 3)" in message


def test_dataparallel_prefix_is_stripped_and_half_weights_are_recorded():
    source = make_tiny(seed=1)
    sd = OrderedDict(("module." + k, v.half() if k.startswith("conv.") else v) for k, v in source.state_dict().items())
    target = make_tiny(seed=2)
    dtypes = load_state_dict(target, sd, "tiny")
    assert dtypes["conv"] == "float16" and dtypes["fc"] == "float32"
    assert target.conv.weight.dtype == torch.float32
    assert torch.equal(target.conv.weight, source.conv.weight.half().float())


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(make_tiny().state_dict(), path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt|damaged"):
        read_checkpoint(cut)
