import pytest

from deploy_robust.errors import UserError
from deploy_robust.runtimes import RuntimeOptions
from deploy_robust.verify.options import VerifyOptions


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(suite="strong"), "--suite must be one of quick, standard"),
        (dict(layout="nhwc"), "--layout must be one of auto, contiguous, channels_last"),
        (dict(n=0), "--n must be a positive whole number"),
        (dict(batch_size=2.5), "--batch-size must be a positive whole number"),
        (dict(eot=0), "--eot must be a positive whole number"),
    ],
)
def test_settings_are_checked_once_when_the_options_are_made(bad, message):
    with pytest.raises(UserError, match=message):
        VerifyOptions(**bad)


def test_the_resume_key_changes_with_what_changes_results_and_only_that():
    base = VerifyOptions(n=100, suite="quick")
    assert base.resume_fields() == VerifyOptions(n=500, suite="quick", sweep=None, resume=False).resume_fields()
    for changed in (
        dict(seed=1),
        dict(backend="openvino"),
        dict(batch_size=64),
        dict(bpda=False),
        dict(layout="contiguous"),
        dict(attack_output="probs"),
        dict(runtime=RuntimeOptions(threads=1)),
    ):
        assert VerifyOptions(n=100, suite="quick", **changed).resume_fields() != base.resume_fields(), changed
