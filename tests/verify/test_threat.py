import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.verify.threat import ThreatModel, parse_eps


def test_eps_parses_fractions_and_numbers():
    assert parse_eps("8/255") == 8 / 255 and parse_eps("0.3") == 0.3 and parse_eps(0.5) == 0.5
    assert parse_eps("1.0/255") == 1 / 255 and parse_eps("0.5/255") == 0.5 / 255
    for bad in ("x", "1/0", "-1", "nan", "1/2/3", "nan/2"):
        with pytest.raises(UserError):
            parse_eps(bad)


def test_linf_eps_above_one_suggests_the_255_scale():
    with pytest.raises(UserError, match="did you mean 8/255"):
        ThreatModel("linf", 8)
    ThreatModel("l2", 8)  # an L2 radius may exceed 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_project_and_random_start_stay_in_the_ball_and_the_image_range(norm):
    threat = ThreatModel(norm, 0.1)
    x = torch.rand(16, 3, 4, 4)
    far = threat.project(x + torch.randn_like(x), x)
    start = threat.random_start(x, torch.Generator().manual_seed(0))
    for point in (far, start):
        delta = (point - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert (size <= 0.1 + 1e-6).all() and point.min() >= 0 and point.max() <= 1


def test_steps_are_the_norms_steepest_ascent():
    grad = torch.tensor([[[[3.0, -4.0]]]])
    assert torch.equal(ThreatModel("linf", 0.1).step(grad, 0.5), torch.tensor([[[[0.5, -0.5]]]]))
    assert torch.allclose(ThreatModel("l2", 0.1).step(grad, 1.0), torch.tensor([[[[0.6, -0.8]]]]))


def test_describe_writes_eps_on_the_255_scale_when_it_is_one():
    assert ThreatModel("linf", 8 / 255).describe() == "L-inf eps=8/255 on [0,1] images"
    assert ThreatModel("l2", 0.5).describe() == "L2 eps=0.5 on [0,1] images"
