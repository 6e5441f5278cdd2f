import pytest

from deploy_robust.errors import UserError
from deploy_robust.exporters.profiles import PROFILES
from deploy_robust.runtimes import BACKENDS
from deploy_robust.targets import EXPORT_TARGETS, TARGETS, get_target


def test_every_target_names_a_profile_and_a_backend_that_exist():
    for target in TARGETS.values():
        assert target.profile in PROFILES and target.backend in BACKENDS, target
        assert target.precisions[0] == "fp32"


def test_export_takes_the_targets_that_are_their_own_profile():
    assert EXPORT_TARGETS == ("ort-cpu", "ort-cuda", "tensorrt")
    assert get_target("openvino").profile == "ort-cpu" and get_target("openvino").backend == "openvino"
    with pytest.raises(UserError, match="--target must be one of ort-cpu, ort-cuda, tensorrt; got openvino"):
        get_target("openvino", export=True)
    with pytest.raises(UserError, match="ort-cpu, openvino, ort-cuda, tensorrt; got jetson"):
        get_target("jetson")


def test_gpu_targets_are_the_ones_whose_backend_is_a_gpu():
    assert {t.name for t in TARGETS.values() if BACKENDS[t.backend].gpu} == {"ort-cuda", "tensorrt"}
