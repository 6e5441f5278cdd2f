import itertools
import json

import pytest

from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.run import run_tune
from deploy_robust.verify import ThreatModel

SETTINGS = dict(n=60, final_n=60, sensitivity_n=32, bench_seconds=0.2, threads=1)


@pytest.fixture(scope="module")
def tuned(digits_loaded, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "out"
    # the last layer pinned to FP32, and GDWS rewrites keeping half the rewritable MACs in the space
    settings = TuneOptions(
        ThreatModel("linf", 0.1),
        max_robust_drop=0.05,
        max_clean_drop=0.05,
        pins=(("7", "fp32"),),
        space=("precision", "gdws"),
        gdws_budgets=(0.5,),
        **SETTINGS,
    )
    doc = run_tune(digits_loaded, out, load_dataset("digits:train"), load_dataset("digits:test"), settings)
    return out, settings, doc


def test_a_tune_writes_a_verified_pick_its_frontier_and_report(tuned):
    out, settings, doc = tuned
    assert doc["pick"] is not None and {p.name for p in out.iterdir()} >= {
        "best",
        "frontier.json",
        "frontier.png",
        "report.md",
        "cache",
    }
    best = open_bundle(out / "best")
    record = json.loads((best.path / "tune.json").read_text())
    assert record["pick"] == doc["pick"] and best.precision in ("fp32", "fp16", "int8", "int4", "mixed")
    picked = next(r for r in doc["measured"] if r["name"] == doc["pick"])
    assert picked["final"]["holds"] and picked["final"]["robust_drop"]["drop"] <= settings.max_robust_drop
    assert doc["final_reference"]["attacked"] == picked["final"]["reference_attacked"]  # how FP32 was attacked, said
    # at least as fast as every configuration that held its final check, measured in the same run: whatever held
    # the quick check and measured faster was verified in full and failed (noise can order them either way)
    faster = [
        r
        for r in doc["measured"]
        if r["holds"] and r["latency_ms"] is not None and r["latency_ms"] < picked["latency_ms"]
    ]
    assert all(r.get("final") and not r["final"]["holds"] for r in faster)
    assert "Pick:" in (out / "report.md").read_text() and (out / "frontier.png").stat().st_size > 1000


def test_every_frontier_plan_is_optimal_for_the_measured_costs_by_brute_force(tuned):
    out, _, doc = tuned
    costs = doc["cost_model"]

    def predict(plan):
        return (
            costs["fp32_latency_ms"] + sum(costs["latency_ms"][i][p] for i, p in enumerate(plan)),
            sum(costs["margin_loss"][i][p] for i, p in enumerate(plan)),
        )

    every_plan = list(map(predict, itertools.product(*[sorted(options) for options in costs["latency_ms"]])))
    assert len(doc["predicted_frontier"]) > 1
    for point in doc["predicted_frontier"]:
        best = min(latency for latency, loss in every_plan if loss <= point["margin_loss"] + 1e-12)
        assert point["latency_ms"] == pytest.approx(best)
    # the bisection looks only at the plans predicted faster than a uniform configuration that held
    bound = doc["search_bound"]
    assert bound["predicted_faster"] == sum(p["latency_ms"] < bound["latency_ms"] for p in doc["predicted_frontier"])
    if "search_pick" in doc:
        assert doc["search_pick"]["predicted_latency_ms"] < bound["latency_ms"]
    assert f"Bisection: {bound['predicted_faster']} of the" in (out / "report.md").read_text()


def test_a_rerun_reads_every_measurement_from_the_cache_and_picks_the_same(tuned, digits_loaded):
    out, settings, doc = tuned
    again = run_tune(digits_loaded, out, load_dataset("digits:train"), load_dataset("digits:test"), settings)
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 10
    assert again["timings"]["sensitivities_measured"] == 0
    kept = ("cache", "timings")  # how this run went, not what it found
    assert {k: v for k, v in again.items() if k not in kept} == {k: v for k, v in doc.items() if k not in kept}


@pytest.mark.slow  # a tune killed with -9 and rerun in a child process (~70 s)
def test_a_killed_tune_continues_from_its_cache(digits_file, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "deploy_robust",
        "tune",
        str(digits_file),
        "--calib",
        "digits:train",
        "--data",
        "digits:test",
        "--eps",
        "0.1",
        "--n",
        "60",
        "--final-n",
        "60",
        "--bench-seconds",
        "0.2",
        "--threads",
        "1",
        "--max-robust-drop",
        "0.05",
        "--max-clean-drop",
        "0.05",
        "-o",
        str(out),
        "--json",
    ]
    env = dict(os.environ, CI="1")
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    measurements = out / "cache" / "measurements.json"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if measurements.exists() and len(json.loads(measurements.read_text() or "{}").get("entries", {})) >= 4:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the tune ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = len(json.loads(measurements.read_text())["entries"])
    assert not (out / "best").exists() and kept >= 4
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["cache"]["hits"] >= kept and doc["pick"]  # what was measured before the kill was reused
    again = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, timeout=600).stdout)
    assert again["cache"]["misses"] == 0
    assert again["timings"]["sensitivities_measured"] == 0
    kept = ("cache", "timings")  # how this run went, not what it found
    assert {k: v for k, v in again.items() if k not in kept} == {k: v for k, v in doc.items() if k not in kept}


def _layer_precisions(bundle_path) -> dict[str, str]:
    layers = open_bundle(bundle_path).manifest.document["precision"].get("layers", [])
    return {layer["name"]: layer["precision"] for layer in layers}


def test_a_pinned_layer_keeps_its_pin_in_every_configuration_and_plan(tuned):
    out, _, doc = tuned
    assert doc["settings"]["pins"] == {"7": "fp32"}
    assert all(len(options) == 1 for options in doc["cost_model"]["margin_loss"][-1:])  # one choice: its pin
    for row in doc["measured"]:
        precisions = _layer_precisions(out / "cache" / "bundles" / row["bundle"])
        assert precisions.get("7", "fp32") == "fp32", row["name"]
    assert any(
        set(_layer_precisions(out / "cache" / "bundles" / r["bundle"]).values()) > {"fp32"} for r in doc["measured"]
    )  # and the other layers were lowered somewhere


def test_gdws_rewrites_join_the_uniform_configurations(tuned):
    out, _, doc = tuned
    gdws = {r["name"]: r for r in doc["measured"] if "gdws" in r["name"]}
    assert set(gdws) == {"uniform gdws0.5 fp32", "uniform gdws0.5 int8"}
    for row in gdws.values():
        bundle = open_bundle(out / "cache" / "bundles" / row["bundle"])
        assert row["uniform"] and row["latency_ms"] > 0 and bundle.manifest.transforms["gdws"]["budget"] == 0.5


def test_each_gdws_option_is_probed_among_unrewritten_neighbours_and_its_latency_terms_corrected(tuned):
    out, _, doc = tuned
    check, after = doc["cost_model"]["latency_check"], doc["cost_model"]["latency_ms"]
    probes, before = check["gdws_probes"], check["by_profile"]  # by_profile: the model before the probes
    for option in ("gdws0.5-fp32", "gdws0.5-int8"):  # probed where the model expects a rewrite to save time
        precision = option.split("-")[1]
        expected = [terms[option] - terms[precision] for terms in before if option in terms]
        assert expected and (option in probes) == any(gain < 0 for gain in expected)
    island = check["island_probe"]["penalty_ms"]  # then the FP32 islands' probe (below)
    for terms_before, terms_after in zip(before, after):
        for option, change in terms_before.items():
            penalty = probes[option]["penalty_ms"] if option in probes else 0.0
            penalty += island if option == "fp32" and len(terms_before) > 1 else 0.0  # not on a pinned layer
            assert terms_after[option] == pytest.approx(change + penalty)
    assert "fp32 islands among" in (out / "report.md").read_text()
    # every plan measured is shown beside what the corrected model expected of it
    assert all(r["predicted_latency_ms"] > 0 for r in doc["measured"] if "plan" in r)


def _a_run_on_the_tunes_cache(tuned, digits_loaded, tmp_path, space):
    """A tune's state on a copy of the tuned fixture's cache, before any stage: its layers (`space`: the per-layer
    precisions, None for all) and the FP32 reference bundle, for calling one stage by hand."""
    import shutil

    import onnx

    from deploy_robust.tune import run as tune_run
    from deploy_robust.tune.space import search_layers
    from deploy_robust.tune.workbench import Workbench

    out, settings, _ = tuned
    shutil.copytree(out / "cache", tmp_path / "cache")
    bench = Workbench(
        digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"), settings, print
    )
    fp32 = bench.bundle("fp32", "fp32")
    run = tune_run._Run(bench)
    run.layers = search_layers(onnx.load(str(fp32.model_path)), "ort-cpu", space, settings.pins)
    return run, fp32


def test_a_gdws_probe_is_the_option_on_its_most_promising_layers_against_the_same_plan_without_it(
    tuned, digits_loaded, tmp_path
):
    from deploy_robust.tune import run as tune_run
    from deploy_robust.tune.space import with_gdws_options

    run, _ = _a_run_on_the_tunes_cache(tuned, digits_loaded, tmp_path, None)
    layers = with_gdws_options(run.layers, {"gdws0.5-int8": set(run.tune.gdws_layers(0.5))})
    run.layers, run.uniform_ms = layers, {"fp32": 0.5}
    # a model expecting layer 2 rewritten at INT8 to save 1 ms over INT8 there, and nothing else to change
    latency = tuple({o: -1.0 if o == "gdws0.5-int8" else 0.0 for o in layer.allowed} for layer in layers)
    probe = tune_run._gdws_probes(run, latency)["gdws0.5-int8"]
    assert probe["layers"] == ["2"] and probe["predicted_change_ms"] == -1.0
    assert probe["penalty_ms"] == pytest.approx(probe["measured_change_ms"] + 1.0)
    # the measured change in the model's ms: the base plan predicted at FP32's latency (nothing changes in this model)
    assert probe["scale_to_model"] == pytest.approx(run.uniform_ms["fp32"] / probe["base_ms"])
    assert probe["measured_change_ms"] == pytest.approx(
        (probe["probe_ms"] - probe["base_ms"]) * probe["scale_to_model"]
    )
    # both plans exported as a user's `export --precision mixed` would: every layer INT8 (7 pinned to FP32), and
    # the same with layer 2 rewritten; measured in one run (cached under the probe's tag)
    exported = [_layer_precisions(bundle) for bundle in (tmp_path / "cache" / "bundles").iterdir()]
    assert {"0": "int8", "2": "int8", "5": "int8", "7": "fp32"} in exported
    assert {"0": "int8", "2.depthwise": "int8", "2.pointwise": "int8", "5": "int8", "7": "fp32"} in exported
    keys = json.loads((tmp_path / "cache" / "measurements.json").read_text())["entries"]
    assert [k for k in keys if k.startswith("latency/probe/")]


def test_the_island_probe_keeps_the_most_sensitive_layers_fp32_among_int8_ones_against_all_int8(
    tuned, digits_loaded, tmp_path
):
    from deploy_robust.tune import run as tune_run

    run, fp32 = _a_run_on_the_tunes_cache(tuned, digits_loaded, tmp_path, ("int8",))
    run.plain, run.uniform_ms = {"fp32": fp32, "int8": fp32}, {"fp32": 0.5, "int8": 0.4}
    # a model where INT8 saves 0.1 ms on every layer, and layer 5 loses the most margin at INT8
    run.loss = [{"fp32": 0.0, "int8": {"0": 0.2, "5": 0.3}.get(layer.name, 0.01)} for layer in run.layers]
    latency = tuple({o: -0.1 if o == "int8" else 0.0 for o in layer.allowed} for layer in run.layers)
    probe = tune_run._island_probe(run, latency)
    unpinned = [layer.name for layer in run.layers if layer.allowed != ("fp32",)]
    # islands are a minority: of the digits CNN's 3 unpinned layers, the one that loses the most at INT8
    assert probe["precision"] == "int8" and probe["layers"] == ["5"] and len(unpinned) == 3
    assert probe["predicted_change_ms"] == pytest.approx(0.1 * len(probe["layers"]))  # the INT8 savings given up
    residual = (probe["measured_change_ms"] - probe["predicted_change_ms"]) / len(probe["layers"])
    assert probe["residual_ms"] == pytest.approx(residual)
    assert probe["penalty_ms"] == pytest.approx(max(residual, 0.0))  # a saving is never spread over every layer
    # in the model's ms: the all-INT8 base predicted at 0.5 - 0.1 per INT8 layer
    assert probe["scale_to_model"] == pytest.approx((0.5 - 0.1 * len(unpinned)) / probe["base_ms"])
    exported = [_layer_precisions(bundle) for bundle in (tmp_path / "cache" / "bundles").iterdir()]
    islands = {name: "fp32" if name in probe["layers"] else "int8" for name in unpinned}
    assert {name: "int8" for name in unpinned} | {"7": "fp32"} in exported and islands | {"7": "fp32"} in exported


def test_the_bisection_checks_only_plans_predicted_faster_than_a_uniform_configuration_that_held(
    tuned, digits_loaded, tmp_path
):
    from deploy_robust.tune import run as tune_run
    from deploy_robust.tune.search import Point
    from deploy_robust.tune.workbench import Config

    run, _ = _a_run_on_the_tunes_cache(tuned, digits_loaded, tmp_path, ("int8",))
    plans = [tuple(p for _ in run.layers) for p in ("int8", "fp32")]
    run.points = [Point(plans[0], 0.30, 0.2), Point(plans[0], 0.39, 0.1), Point(plans[1], 0.50, 0.0)]
    run.uniform_ms = {"fp32": 0.5, "int8": 0.4}
    run.uniform_checks = {Config("int8"): {"holds": False}}
    assert tune_run._faster_than_holding(run) == run.points  # nothing held yet: the whole frontier
    run.uniform_checks = {Config("int8"): {"holds": True}, Config("fp32"): {"holds": True}}
    assert tune_run._faster_than_holding(run) == run.points[:2]  # faster than uniform INT8's 0.4 ms
    assert run.search_bound == {"uniform": "uniform int8", "latency_ms": 0.4, "frontier_points": 3,
                                "predicted_faster": 2}  # fmt: skip
    run.uniform_ms["int8"] = 0.2
    assert tune_run._faster_than_holding(run) == []  # nothing to bisect


def _bisection_stopped(doc: dict) -> list[str]:
    """["bisection"] where the budget had a bisection to stop: some frontier plan was predicted faster than the
    fastest uniform configuration that held (which plans are depends on this CPU's measured latencies)."""
    bound = doc["search_bound"]
    return ["bisection"] if bound is None or bound["predicted_faster"] else []


def test_a_spent_time_budget_stops_early_and_keeps_the_fp32_reference(tuned, digits_loaded, tmp_path):
    import shutil
    from dataclasses import replace

    out, settings, doc = tuned
    shutil.copytree(out / "cache", tmp_path / "cache")  # every measurement of the full tune, reused
    hurried = run_tune(
        digits_loaded,
        tmp_path,
        load_dataset("digits:train"),
        load_dataset("digits:test"),
        replace(settings, time_budget_s=1e-6),
    )
    # cached measurements cost nothing and are still read; anything new (here: the contenders' final benchmark)
    # does not start past the budget
    assert hurried["time_budget"]["stopped_in"] == ["final latencies", "sensitivities", *_bisection_stopped(hurried)]
    assert all(set(options) == {"fp32"} for options in hurried["cost_model"]["margin_loss"])
    assert hurried["pick"] == "uniform fp32" and "time budget ran out" in hurried["pick_reason"]
    assert open_bundle(tmp_path / "best").precision == "fp32"
    report = (tmp_path / "report.md").read_text()
    assert "Time budget" in report and "Why: the time budget ran out" in report


def test_tunes_sharing_a_cache_measure_only_what_they_add_one_at_a_time(tuned, digits_loaded, tmp_path):
    import fcntl
    import shutil
    from dataclasses import replace

    from deploy_robust.errors import UserError

    out, settings, doc = tuned
    shared = tmp_path / "shared"
    shutil.copytree(out / "cache", shared)
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    clean = run_tune(digits_loaded, tmp_path / "clean", train, test, replace(settings, metric="clean"), cache=shared)
    # the robust-driven tune's bundles and uniform checks serve the clean one, which measures what it adds (clean
    # margins as its sensitivities, its own candidates)
    assert clean["cache"]["hits"] > 10 and clean["cache"]["misses"] < doc["cache"]["misses"]
    assert clean["settings"]["metric"] == "clean"
    if doc["final_reference"]["attacked"] == "every point":  # FP32 verified on every final point (the robust tune
        # shipped it): whatever the clean tune picks (on the digits CNN FP32 and INT4 time within noise), it pairs
        # against that run, read
        assert clean["final_reference"] == doc["final_reference"]
    assert not (tmp_path / "clean" / "cache").exists() and (tmp_path / "clean" / "best" / "manifest.json").is_file()
    # while another tune holds the cache, a second is refused in one line and writes nothing
    with open(shared / "lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="in use by another tune"):
            run_tune(digits_loaded, tmp_path / "second", train, test, settings, cache=shared)
    assert not (tmp_path / "second" / "frontier.json").exists()


class _Clock:
    """time.monotonic, moved on by `offset` seconds: the budget spent at an exact point of the run."""

    def __init__(self) -> None:
        import time

        self.time, self.offset = time, 0.0

    def monotonic(self) -> float:
        return self.time.monotonic() + self.offset

    def __getattr__(self, name):
        return getattr(self.time, name)


def test_under_a_time_budget_a_verified_uniform_pick_comes_before_the_per_layer_search(
    tuned, digits_loaded, tmp_path, monkeypatch
):
    import shutil
    from dataclasses import replace

    from deploy_robust import progress
    from deploy_robust.tune import run as tune_run
    from deploy_robust.tune import workbench

    out, settings, _ = tuned
    shutil.copytree(out / "cache", tmp_path / "cache")
    clock, sensitivities = _Clock(), tune_run._sensitivities

    def budget_spent_here(*args):
        clock.offset = 1e6  # the whole budget gone the moment the per-layer search starts
        return sensitivities(*args)

    for module in (progress, tune_run, workbench):
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(tune_run, "_sensitivities", budget_spent_here)
    timed = run_tune(digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"),
                     replace(settings, time_budget_s=3600))  # fmt: skip
    assert clock.offset == 1e6 and timed["time_budget"]["stopped_in"] == ["sensitivities", *_bisection_stopped(timed)]
    picked = next(r for r in timed["measured"] if r["name"] == timed["pick"])
    # the pick was made and verified before the budget ran out: a uniform configuration that held its 60-point
    # standard-suite check, the fastest that did, not the unverified FP32 fall-back
    assert picked["uniform"] and picked["final"]["holds"] and timed["pick_reason"] is None
    faster = [r for r in timed["measured"] if r["holds"] and r["latency_ms"] < picked["latency_ms"]]
    assert all(r.get("final") and not r["final"]["holds"] for r in faster)
    assert not [r for r in timed["measured"] if not r["uniform"]]  # no per-layer plan was reached
    # the uniform configurations were quick-checked fastest first, none after the first that held
    checked = {r["name"] for r in timed["measured"]}
    assert not checked & set(timed["uniform_not_checked"]) and len(checked) + len(timed["uniform_not_checked"]) == 5
    assert all(not r["holds"] for r in timed["measured"] if r["name"] != timed["pick"] and r["uniform"])
    assert (
        open_bundle(tmp_path / "best").manifest.model.sha256
        == open_bundle(tmp_path / "cache" / "bundles" / picked["bundle"]).manifest.model.sha256
    )


def test_under_a_time_budget_a_first_pick_failing_its_final_check_leads_to_the_next_uniform_configuration(
    tuned, digits_loaded, tmp_path, monkeypatch
):
    import shutil
    from dataclasses import replace

    from deploy_robust.tune.workbench import Workbench

    out, settings, _ = tuned
    shutil.copytree(out / "cache", tmp_path / "cache")
    latencies, verified, failed = Workbench.latencies, Workbench.verified, []
    fp32_sha = next(r for r in _by_name(tuned[2]).values() if r["name"] == "uniform fp32")["bundle"]

    def fp32_slowest(self, bundles, tag):
        """The measured latencies, FP32's made the slowest (on the digits CNN it is the fastest, and the walk
        would end at the reference at once)."""
        return [ms * (1000 if b.path.name == fp32_sha else 1) for b, ms in zip(bundles, latencies(self, bundles, tag))]

    def first_candidate_loses_everything(self, bundle, suite, n, skip=0):
        """The standard suite's figures, except that the first candidate checked is made to lose every point: a
        configuration that held its quick check and fails its final one."""
        figures = verified(self, bundle, suite, n, skip)
        if suite == "standard" and bundle.path.name != fp32_sha and not failed:
            failed.append((bundle.path.name, bundle.manifest.model.sha256))
        if failed and bundle.manifest.model.sha256 == failed[0][1]:  # every time, and in a plan of the same model
            figures = figures | {"per_example": figures["per_example"] | {"clean": "0" * n, "robust": "0" * n}}
        return figures

    monkeypatch.setattr(Workbench, "latencies", fp32_slowest)
    monkeypatch.setattr(Workbench, "verified", first_candidate_loses_everything)
    timed = run_tune(digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"),
                     replace(settings, time_budget_s=3600))  # fmt: skip
    rows = _by_name(timed)
    first, picked = next(r for r in rows.values() if r["bundle"] == failed[0][0]), rows[timed["pick"]]
    assert first["uniform"] and first["holds"] and not first["final"]["holds"]
    # the walk went on: the uniform configurations after it were quick-checked up to the next that held, which was
    # verified in full before the per-layer search (which may then only beat it), and a verified pick was shipped
    assert [r for r in rows.values() if r["uniform"] and r is not first and r.get("final", {}).get("holds")]
    assert picked is not first and picked["final"]["holds"] and timed["pick_reason"] is None


@pytest.mark.parametrize("gain", [0.02, 0.5])
def test_under_a_time_budget_a_contender_gets_a_final_check_only_if_clearly_faster_than_the_verified_pick(
    tuned, digits_loaded, tmp_path, monkeypatch, gain
):
    import shutil
    from dataclasses import replace

    from deploy_robust.tune import run as tune_run
    from deploy_robust.tune.space import plan_key
    from deploy_robust.tune.workbench import Workbench

    out, settings, doc = tuned
    shutil.copytree(out / "cache", tmp_path / "cache")
    latencies, searched = Workbench.latencies, []

    def one_searched_plan(run, fp32, calib):
        """The per-layer search cut to one real plan, exported and quick-checked as the bisection does (what the
        search itself finds on the digits CNN depends on its timings): INT8 on the largest layer, the rest FP32."""
        largest = max((layer for layer in run.layers if "int8" in layer.allowed), key=lambda layer: layer.macs)
        plan = tuple("int8" if layer is largest else "fp32" for layer in run.layers)
        bundle = run.tune.bundle(
            plan_key(plan), "mixed", plan, run.layers, loaded=run.tune.plan_model(run.layers, plan)
        )
        run.checked[plan] = {"bundle": bundle} | run.tune.quick_check(bundle, fp32)
        searched.append(bundle.path.name)

    def the_plan_looks_fastest(self, bundles, tag):
        """The contenders' run makes the searched plan look 10x faster than it is; timed again beside the verified
        pick, it is `gain` faster than the pick."""
        measured = latencies(self, bundles, tag)
        if tag == "against-pick":  # [contender, pick]
            return [measured[1] / (1 + gain), measured[1]]
        return [ms * (0.1 if b.path.name in searched else 1) for b, ms in zip(bundles, measured)]

    monkeypatch.setattr(tune_run, "_search", one_searched_plan)
    monkeypatch.setattr(Workbench, "latencies", the_plan_looks_fastest)
    timed = run_tune(digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"),
                     replace(settings, time_budget_s=3600))  # fmt: skip
    plan = next(r for r in timed["measured"] if r["bundle"] in searched)
    assert plan["holds"] and plan["timed_against_pick"]["gain"] == pytest.approx(gain)
    assert plan["timed_against_pick"]["pick"] in uniform_names(timed)  # the uniform pick verified first
    if gain < settings.min_gain:  # not worth a final check: the pick verified first stands
        assert not plan["timed_against_pick"]["final_check"] and "final" not in plan
        assert timed["pick"] == plan["timed_against_pick"]["pick"]
        assert f"not run: {1 + gain:.3f}x" in (tmp_path / "report.md").read_text()
    else:  # checked on the standard suite, and the pick where it held
        assert plan["timed_against_pick"]["final_check"] and "final" in plan
        assert (timed["pick"] == plan["name"]) == plan["final"]["holds"]


def uniform_names(doc: dict) -> set[str]:
    return {name for r in doc["measured"] if r["uniform"] for name in (r["name"], *r.get("same_graph_as", ()))}


def _by_name(doc: dict) -> dict:
    return {r["name"]: r for r in doc["measured"]}


def test_a_budget_spent_before_any_check_still_ships_the_fp32_reference_and_says_it_was_not_verified(
    tuned, digits_loaded, tmp_path
):
    from dataclasses import replace

    _, settings, _ = tuned
    hurried = run_tune(digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"),
                       replace(settings, time_budget_s=1e-6))  # fmt: skip
    assert not hurried["measured"] and hurried["pick"] == "uniform fp32"
    assert "not verified in this run" in hurried["pick_reason"] and "uniform exports" in hurried["pick_reason"]
    assert open_bundle(tmp_path / "best").precision == "fp32"


@pytest.mark.slow  # 45 s on one worker: `make test-all` runs it
def test_the_time_budget_holds_on_a_model_whose_exports_alone_exceed_it(tmp_path):
    """A CIFAR ResNet-18 (random weights: time, not accuracy, is under test): its INT8 export alone (calibration
    and GPTQ rounding) takes longer than the budget, which must hold within 10% with every step counted."""
    import time

    import numpy as np

    from deploy_robust import zoo
    from deploy_robust.ingest import LoadedModel

    rng = np.random.default_rng(0)
    images = tmp_path / "images.npz"
    np.savez(images, x=rng.integers(0, 256, (300, 3, 32, 32), dtype=np.uint8), y=rng.integers(0, 10, 300))
    entry = zoo.get("resnet18")
    loaded = LoadedModel(entry.build().eval(), entry.spec, {"file": "resnet18-random", "format": "zoo", "sha256": "",
                         "arch": "resnet18", "layer_dtypes": {}})  # fmt: skip
    budget = 40.0
    settings = TuneOptions(ThreatModel("linf", 1 / 255), n=50, final_n=50, bench_seconds=0.5, threads=1,
                           time_budget_s=budget)  # fmt: skip
    data = load_dataset(images)
    started = time.monotonic()
    doc = run_tune(loaded, tmp_path / "out", data, data, settings)
    took = time.monotonic() - started
    assert took <= 1.1 * budget, f"tune took {took:.1f} s on a {budget:g} s budget"
    assert "uniform exports" in doc["time_budget"]["stopped_in"]
    # what it measured before the budget ran out is written down, with where it stopped
    assert json.loads((tmp_path / "out" / "frontier.json").read_text())["time_budget"]["stopped_in"]
    assert "Time budget" in (tmp_path / "out" / "report.md").read_text()
    assert doc["pick"] == "uniform fp32" and open_bundle(tmp_path / "out" / "best").precision == "fp32"


def test_every_layer_of_a_torch_model_is_measured_in_memory_without_single_layer_exports(tuned):
    out, _, doc = tuned
    assert doc["sensitivities"] == {"in-memory": 4, "exported": 0}
    keys = json.loads((out / "cache" / "measurements.json").read_text())["entries"]
    lowered = [k for k in keys if k.startswith("lowered-margins/")]
    # the FP32 model, layers 0, 2 and 5 at int8 and int4 (7 is pinned to FP32), and layer 2 rewritten by GDWS at
    # fp32 and int8, each under PGD and clean (a clean budget binds too); no bundle's margins at all
    assert len(lowered) == 2 * (1 + 3 * 2 + 2) and not [k for k in keys if k.startswith("margins/")]
    assert sum("/robust/" in k for k in lowered) == sum("/clean/" in k for k in lowered) == 1 + 3 * 2 + 2
    assert sum("/2/gdws0.5-" in k for k in lowered) == 2 * 2


def test_gdws_is_a_per_layer_option_and_a_plan_choosing_it_ships_that_layer_rewritten(tuned, digits_loaded, tmp_path):
    import shutil

    import onnx

    from deploy_robust.tune.space import plan_key, search_layers, with_gdws_options
    from deploy_robust.tune.workbench import Workbench

    out, settings, doc = tuned
    costs = doc["cost_model"]
    # layer 2, the one convolution the uniform rewrite rewrites, gains both GDWS options, each with a measured
    # sensitivity and a predicted latency; the others (the first conv, the Linears, the pinned 7) none
    options = [set(layer) for layer in costs["latency_ms"]]
    assert options[1] == {"fp32", "int8", "int4", "gdws0.5-fp32", "gdws0.5-int8"}
    assert not any(o.startswith("gdws") for i in (0, 2, 3) for o in options[i])
    assert set(costs["margin_loss"][1]) == options[1] and costs["margin_loss"][1]["gdws0.5-fp32"] > 0
    # a plan choosing it exports a bundle with only that layer rewritten, as the uniform rewrite rewrites it, both
    # of its convolutions at the plan's precision (from a copy of the tune's cache: its bundles are reused)
    shutil.copytree(out / "cache", tmp_path / "cache")
    bench = Workbench(
        digits_loaded, tmp_path, load_dataset("digits:train"), load_dataset("digits:test"), settings, print
    )
    fp32 = bench.bundle("fp32", "fp32")
    rewritten = {"gdws0.5-int8": set(bench.gdws_layers(0.5))}
    layers = with_gdws_options(
        search_layers(onnx.load(str(fp32.model_path)), "ort-cpu", None, settings.pins), rewritten
    )
    plan = ("int8", "gdws0.5-int8", "int8", "fp32")
    bundle = bench.bundle(plan_key(plan), "mixed", plan, layers, loaded=bench.plan_model(layers, plan))
    assert _layer_precisions(bundle.path) == {"0": "int8", "2.depthwise": "int8", "2.pointwise": "int8", "5": "int8",
                                              "7": "fp32"}  # fmt: skip
    replaced = [layer for layer in bundle.manifest.transforms["gdws"]["layers"] if layer["replaced"]]
    assert [layer["name"] for layer in replaced] == ["2"]
    assert replaced[0]["allocation"] == bench.gdws_layers(0.5)["2"]["allocation"]


@pytest.mark.slow  # a whole tune on OpenVINO (~40 s); the profile mapping itself is tested in test_workbench
def test_an_openvino_tune_shares_its_latency_model_by_the_runtimes_own_per_layer_profile(digits_loaded, tmp_path):
    pytest.importorskip("openvino")
    settings = TuneOptions(ThreatModel("linf", 0.1), target="openvino", space=("int8",), max_robust_drop=0.05,
                           max_clean_drop=0.05, **(SETTINGS | {"n": 40, "final_n": 40}))  # fmt: skip
    doc = run_tune(digits_loaded, tmp_path / "ov", load_dataset("digits:train"), load_dataset("digits:test"), settings)
    check = doc["cost_model"]["latency_check"]
    assert check["shared_by"]["int8"] == "runtime profile" and doc["pick"] is not None
    # both models share out the same measured change of uniform INT8; only how it is shared differs
    total = [sum(layer["int8"] for layer in check[way] if "int8" in layer) for way in ("by_profile", "by_macs")]
    assert total[0] == pytest.approx(total[1])


def test_an_ort_tune_keeps_its_latency_model_by_macs(tuned):
    _, _, doc = tuned
    # the precisions by MACs, the GDWS rewrites by the MACs each layer's rewrite saves: no runtime profile
    assert doc["cost_model"]["latency_check"]["shared_by"] == {
        "int8": "MACs",
        "int4": "MACs",
        "gdws0.5-fp32": "MACs saved",
        "gdws0.5-int8": "MACs saved",
    }
