from deploy_robust.verify.attacks.apgd import _apgd_checkpoints


def test_apgd_checkpoints_follow_the_paper():
    points = _apgd_checkpoints(100)
    assert points[:3] == [22, 41, 57] and points[-1] <= 100  # p = 0, .22, .41, .57, ... (Croce and Hein 2020)
