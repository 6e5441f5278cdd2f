from deploy_robust.verify.suites import STOCHASTIC, SUITES


def test_every_suite_attacks_the_twin_the_engine_and_the_reference():
    for name, plan in SUITES.items():
        assert {a.on for a in plan} == {"S", "E", "R"}, name
        assert len({a.name for a in plan}) == len(plan), name
    assert set(STOCHASTIC) == set(SUITES) and all(r.passes > 1 and r.eot > 1 for r in STOCHASTIC.values())


def test_suites_grow_in_strength():
    steps = {name: max(a.params.get("steps", 0) for a in plan) for name, plan in SUITES.items()}
    assert steps["quick"] < steps["standard"] < steps["thorough"]
