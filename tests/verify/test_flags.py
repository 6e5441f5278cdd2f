from deploy_robust.verify.flags import sanity_flags


def _doc(**changes):
    doc = {
        "attacks": [
            {"attack": "pgd-ce", "robust_accuracy": 0.3, "broke": 60, "points_attacked": 90},
            {"attack": "fgsm", "robust_accuracy": 0.3, "broke": 0, "points_attacked": 30},
        ],
        "zero_gradient_points_on_S": 0,
        "agreement_E_S_on_S_adversarial": 1.0,
        "data": {"n": 100},
        "stochastic_engine": {
            "stochastic": False,
            "stable_prediction_fraction": 1.0,
            "scoring_passes": 1,
            "eot_draws": 1,
            "square_score_draws": 1,
        },
    }
    return doc | changes


def test_an_honest_evaluation_raises_nothing():
    assert sanity_flags(_doc()) == []


def test_masking_symptoms_each_raise_their_flag():
    # FGSM, after the iterative attacks, breaks 10 of the 50 points they all left robust
    weaker = _doc(
        attacks=[
            {"attack": "pgd-ce", "robust_accuracy": 0.5, "broke": 40, "points_attacked": 90},
            {"attack": "fgsm", "robust_accuracy": 0.4, "broke": 10, "points_attacked": 50},
        ]
    )
    assert [f["flag"] for f in sanity_flags(weaker)] == ["iterative_weaker_than_fgsm"]
    first = _doc(
        attacks=[
            {"attack": "fgsm", "robust_accuracy": 0.5, "broke": 40, "points_attacked": 90},
            {"attack": "pgd-ce", "robust_accuracy": 0.4, "broke": 10, "points_attacked": 50},
        ]
    )
    assert sanity_flags(first) == []  # FGSM first breaks the easy points: no symptom
    assert [f["flag"] for f in sanity_flags(_doc(zero_gradient_points_on_S=3))] == ["zero_gradients"]
    curve = _doc(eps_curve=[{"eps": 0.0, "accuracy": 0.9}, {"eps": 0.5, "accuracy": 0.6}])
    assert [f["flag"] for f in sanity_flags(curve)] == ["not_zero_at_large_eps"]


def _square(n, survivors, broken):
    attacks = [
        {"attack": "pgd-ce", "on": "S", "robust_accuracy": survivors / n, "broke": n - survivors, "points_attacked": n},
        {
            "attack": "square",
            "on": "E",
            "robust_accuracy": (survivors - broken) / n,
            "broke": broken,
            "points_attacked": survivors,
        },
    ]
    return _doc(attacks=attacks, data={"n": n}, robust_accuracy=(survivors - broken) / n)


def test_square_beating_the_gradient_attacks_is_flagged_only_beyond_an_honest_twins_misses():
    assert sanity_flags(_square(200, 100, 1)) == []  # one point of n = 200: an honest miss (the demo's case)
    assert sanity_flags(_square(200, 100, 2)) == []
    flagged = sanity_flags(_square(200, 100, 8))  # a masked twin: Square breaks survivors wholesale
    assert [f["flag"] for f in flagged] == ["black_box_beats_white_box"] and "p = " in flagged[0]["detail"]


def test_the_binomial_tail_is_exact():
    from deploy_robust.verify.flags import binomial_tail

    assert binomial_tail(0, 10, 0.3) == 1.0 and abs(binomial_tail(1, 1, 0.25) - 0.25) < 1e-12
    assert abs(binomial_tail(2, 3, 0.5) - 0.5) < 1e-12
    # tens of thousands of points (a distributed verify): no overflow, and the known values
    import math

    exact = sum(math.comb(1000, i) * 0.01**i * 0.99 ** (1000 - i) for i in range(15, 1001))
    assert abs(binomial_tail(15, 1000, 0.01) - exact) < 1e-12
    assert binomial_tail(0, 50000, 0.01) == 1.0 and binomial_tail(50001, 50000, 0.01) == 0.0
    assert abs(binomial_tail(500, 50000, 0.01) - 0.5) < 0.02  # the median of Binomial(50000, 0.01)
    assert binomial_tail(700, 50000, 0.01) < 1e-15


def test_the_sweep_follows_the_threat_and_the_flag_only_judges_far_beyond_it():
    from deploy_robust.verify.protocol import sweep_for
    from deploy_robust.verify.threat import ThreatModel

    assert sweep_for(ThreatModel("linf", 0.3), (1, 28, 28)) == (0.0, 0.075, 0.15, 0.3, 0.6, 1.0)  # capped at 1
    l2 = sweep_for(ThreatModel("l2", 0.5), (3, 32, 32))
    assert l2[0] == 0 and l2[-1] == 4.0 and len(l2) == 7
    near = _doc(
        threat_model={"norm": "linf", "eps": 0.3},
        eps_curve=[{"eps": 0.0, "accuracy": 0.9}, {"eps": 0.25, "accuracy": 0.7}],
    )
    assert sanity_flags(near) == []  # below the threat's eps: no verdict on attack strength
    far = _doc(
        threat_model={"norm": "linf", "eps": 0.3},
        eps_curve=[{"eps": 0.0, "accuracy": 0.9}, {"eps": 1.0, "accuracy": 0.2}],
    )
    assert [f["flag"] for f in sanity_flags(far)] == ["not_zero_at_large_eps"]


def test_doubled_steps_breaking_more_than_half_a_point_is_not_converged():
    def run(broke):
        return _doc(
            attacks=[
                {"attack": "pgd-ce", "robust_accuracy": 0.3, "broke": 70, "points_attacked": 100},
                {"attack": "pgd-ce-2x-steps", "robust_accuracy": 0.3, "broke": broke, "points_attacked": 30},
            ]
        )

    assert [f["flag"] for f in sanity_flags(run(2))] == ["not_converged"] and sanity_flags(run(0)) == []
