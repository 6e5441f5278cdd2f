import torch
import pytest

from deploy_robust.errors import UserError
from deploy_robust.ingest.exported_program import load_exported_program
from tests.security import corpus


def test_a_plain_program_loads_and_runs(tmp_path):
    path = tmp_path / "m.pt2"
    corpus._exported_program(path)
    program = load_exported_program(path)
    assert program.module()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize(
    "write, part",
    [
        (corpus._pt2_sample_inputs, "sample_inputs"),
        (corpus._pt2_pickled_weight, "weights"),
        (corpus._pt2_opaque_constant, "opaque_obj_0"),
    ],
)
def test_each_pickled_part_is_refused_by_name_and_runs_nothing(tmp_path, write, part):
    path, marker = tmp_path / "evil.pt2", tmp_path / corpus.MARKER
    write(path, marker)
    with pytest.raises(UserError, match=f"{part}.*--trust-pickle"):
        load_exported_program(path)
    assert not marker.exists()


def test_the_weights_only_guard_holds_even_if_the_part_check_is_bypassed(tmp_path, monkeypatch):
    from deploy_robust.ingest import exported_program

    path, marker = tmp_path / "evil.pt2", tmp_path / corpus.MARKER
    corpus._pt2_pickled_weight(path, marker)
    monkeypatch.setattr(exported_program, "_check_parts", lambda p: None)  # second line of defence alone
    with pytest.raises(UserError, match="--trust-pickle"):
        load_exported_program(path)
    assert not marker.exists()
    assert torch.load.__name__ == "load"  # the guard put torch.load back
