from deploy_robust.verify.flags import sanity_flags


def _doc(**changes):
    doc = {"attacks": [{"attack": "fgsm", "robust_accuracy": 0.4}, {"attack": "pgd-ce", "robust_accuracy": 0.3}],
           "zero_gradient_points_on_S": 0, "agreement_E_S_on_S_adversarial": 1.0, "data": {"n": 100},
           "stochastic_engine": {"stochastic": False, "stable_prediction_fraction": 1.0, "scoring_passes": 1,
                                 "eot_draws": 1, "square_score_draws": 1}}
    return doc | changes


def test_an_honest_evaluation_raises_nothing():
    assert sanity_flags(_doc()) == []


def test_masking_symptoms_each_raise_their_flag():
    weaker = _doc(attacks=[{"attack": "fgsm", "robust_accuracy": 0.2}, {"attack": "pgd-ce", "robust_accuracy": 0.5}])
    assert [f["flag"] for f in sanity_flags(weaker)] == ["iterative_weaker_than_fgsm"]
    assert [f["flag"] for f in sanity_flags(_doc(zero_gradient_points_on_S=3))] == ["zero_gradients"]
    curve = _doc(eps_curve=[{"eps": 0.0, "accuracy": 0.9}, {"eps": 0.5, "accuracy": 0.6}])
    assert [f["flag"] for f in sanity_flags(curve)] == ["not_zero_at_large_eps"]
