import pytest

from deploy_robust.errors import UserError
from deploy_robust.tune.options import TuneOptions
from deploy_robust.verify import ThreatModel

THREAT = ThreatModel("linf", 0.1)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(objective="speed"), "--objective must be latency or throughput"),
        (dict(max_robust_drop=1.5), r"did you mean 0.015\?"),
        (dict(final_n=0), "--final-n must be positive"),
        (dict(target="jetson"), "--target must be one of"),
        (dict(target="tensorrt", space=("int4",)), "cannot run int4"),
        (dict(space=("gdws",), gdws_budgets=(1.5,)), "fractions of MACs kept"),
        (dict(min_gain=5.0), r"--min-gain is a fraction of the verified pick's time, in \[0, 1\); got 5"),
        (dict(min_gain=-0.1), "--min-gain is a fraction"),
    ],
)
def test_settings_are_checked_once_when_the_options_are_made(bad, message):
    with pytest.raises(UserError, match=message):
        TuneOptions(THREAT, **bad)


def test_the_space_names_precisions_and_gdws_apart():
    options = TuneOptions(THREAT, space=("int8", "gdws"))
    assert options.precision_space() == ("int8",) and options.with_gdws
    assert TuneOptions(THREAT).precision_space() is None and not TuneOptions(THREAT).with_gdws
