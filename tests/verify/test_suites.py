from deploy_robust.verify.suites import SUITES

OWN = [s for s in SUITES.values() if not s.autoattack]
AUTOATTACK = [s for s in SUITES.values() if s.autoattack]


def test_every_suite_attacks_the_twin_the_engine_and_the_reference():
    for suite in OWN:
        plan = suite.attacks
        assert {a.on for a in plan} == {"S", "E", "R"}, suite.name
        assert len({a.name for a in plan}) == len(plan), suite.name
        # the cascade: FGSM after the iterative attacks, so its breaks are a symptom (verify.flags)
        names = [a.name for a in plan]
        assert names.index("fgsm") > max(i for i, a in enumerate(names) if a.startswith(("pgd", "apgd")))


def test_the_autoattack_suites_run_what_autoattack_runs():
    def attacks(suite):
        return [(a.name, a.params.get("targets"), a.params.get("restarts", 1)) for a in SUITES[suite].attacks]

    assert attacks("autoattack-standard") == [
        ("apgd-ce", None, 1),
        ("apgd-t", 9, 1),
        ("fab-t", 9, 1),
        ("square", None, 1),
    ]
    assert attacks("autoattack-plus") == [
        ("apgd-ce", None, 5),
        ("apgd-dlr", None, 5),
        ("fab", None, 5),
        ("square", None, 5),
        ("apgd-t", 9, 1),
        ("fab-t", 9, 1),
    ]
    assert [a.name for a in SUITES["autoattack-rand"].attacks] == ["apgd-ce", "apgd-dlr"]
    assert SUITES["autoattack-rand"].stochastic.eot == 20
    assert {s.name for s in AUTOATTACK} == {"autoattack-standard", "autoattack-plus", "autoattack-rand"}
    assert all(a.params.get("steps", 100) == 100 for s in AUTOATTACK for a in s.attacks)
    assert SUITES["autoattack-standard"].attacks[-1].params["queries"] == 5000
    # the one addition to AutoAttack's recipe: restarts only on points that nearly crossed (never weaker)
    assert SUITES["autoattack-standard"].attacks[1].params["rescue_restarts"] == 4
    assert all(s.stochastic.passes > 1 and s.stochastic.eot > 1 for s in SUITES.values())


def test_suites_grow_in_strength():
    steps = {s.name: max(a.params.get("steps", 0) for a in s.attacks) for s in OWN}
    assert steps["quick"] < steps["standard"] < steps["thorough"]
