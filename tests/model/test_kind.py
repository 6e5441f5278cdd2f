import dataclasses

import pytest

from deploy_robust.ingest.kinds import KINDS
from deploy_robust.model.kind import ModelKind


def test_a_kind_is_plain_data_with_nothing_required_but_its_name():
    kind = ModelKind("plain")
    assert kind.checkpoint_key is None and kind.load is None and kind.float_export and kind.attack_plan is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        kind.name = "other"


def test_every_registered_kind_is_consistent():
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names))
    for kind in KINDS:
        assert (kind.checkpoint_key is None) == (kind.load is None)  # a key without a loader cannot rebuild
        assert kind.describe is not None
        assert kind.float_export or kind.trained_grid_form is not None  # refusing float needs a grid form
