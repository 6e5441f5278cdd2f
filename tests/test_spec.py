import pytest

from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec


def test_round_trip_through_json():
    spec = InputSpec((3, 32, 32), 10, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert InputSpec.from_json(spec.to_json()) == spec
    assert spec.to_json()["value_range"] == [0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shape=(3, 32), num_classes=10), "three positive sizes"),
        (dict(shape=(3, 32, 32), num_classes=1), "at least 2 classes"),
        (dict(shape=(3, 32, 32), num_classes=10, mean=(0.1, 0.2), std=(1, 1, 1)), "2 values but the input has 3"),
        (dict(shape=(1, 8, 8), num_classes=10, mean=(0.0,), std=(0.0,)), "positive"),
    ],
)
def test_invalid_specs_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        InputSpec(**kwargs)
