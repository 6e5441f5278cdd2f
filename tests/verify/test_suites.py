from deploy_robust.verify.suites import AUTOATTACK_SUITES, STOCHASTIC, SUITES


def test_every_suite_attacks_the_twin_the_engine_and_the_reference():
    for name, plan in SUITES.items():
        if name in AUTOATTACK_SUITES:
            continue
        assert {a.on for a in plan} == {"S", "E", "R"}, name
        assert len({a.name for a in plan}) == len(plan), name
        # the cascade: FGSM after the iterative attacks, so its breaks are a symptom (verify.flags)
        names = [a.name for a in plan]
        assert names.index("fgsm") > max(i for i, a in enumerate(names) if a.startswith(("pgd", "apgd")))


def test_the_autoattack_suites_run_what_autoattack_runs():
    def attacks(suite):
        return [(a.name, a.params.get("targets"), a.params.get("restarts", 1)) for a in SUITES[suite]]
    assert attacks("autoattack-standard") == [("apgd-ce", None, 1), ("apgd-t", 9, 1), ("fab-t", 9, 1),
                                              ("square", None, 1)]
    assert attacks("autoattack-plus") == [("apgd-ce", None, 5), ("apgd-dlr", None, 5), ("fab", None, 5),
                                          ("square", None, 5), ("apgd-t", 9, 1), ("fab-t", 9, 1)]
    assert [a.name for a in SUITES["autoattack-rand"]] == ["apgd-ce", "apgd-dlr"]
    assert STOCHASTIC["autoattack-rand"].eot == 20 and set(AUTOATTACK_SUITES) < set(SUITES)
    assert all(a.params.get("steps", 100) == 100 for s in AUTOATTACK_SUITES for a in SUITES[s])
    assert SUITES["autoattack-standard"][-1].params["queries"] == 5000
    assert set(STOCHASTIC) == set(SUITES) and all(r.passes > 1 and r.eot > 1 for r in STOCHASTIC.values())


def test_suites_grow_in_strength():
    steps = {name: max(a.params.get("steps", 0) for a in plan) for name, plan in SUITES.items()
             if name not in AUTOATTACK_SUITES}
    assert steps["quick"] < steps["standard"] < steps["thorough"]
