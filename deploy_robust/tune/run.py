"""A tune, end to end: measure cheaply, search, verify candidates on the engine, verify the pick in full.

1. Bundles of the uniform configurations (fp32, fp16, int8, int4; with `gdws` in the space, GDWS rewrites
   at a few MAC budgets in fp32 and int8), benchmarked interleaved on the target runtime; each layer's
   latency change and robustness sensitivity (tune.measure). Pinned layers keep their pin everywhere.
2. The frontier of plans under the additive model (tune.search), each GDWS option's terms first corrected by
   a probe: a few layers rewritten among unrewritten neighbours, measured (`_gdws_probes`); and the FP32 terms
   by a probe of a few layers kept in float among INT8 ones (`_island_probe`).
3. Along the frontier, a bisection for the fastest plan whose engine still holds: quick suite on `n`
   test points, paired with the FP32 bundle on the same points, robust and clean drops within budget.
   The uniform configurations are verified the same way.
4. The candidates that hold and the uniform configurations, benchmarked again in one interleaved run;
   the fastest wins. It is verified with the standard suite on `final_n` points, paired with FP32 on the
   same points (FP32 attacked where the candidate lost, an upper bound of the drop, and everywhere only
   when that bound breaks the budget), and accepted only when the paired drop (point estimate; its 95%
   interval is reported) is within the budget; otherwise the next fastest is tried. FP32 (the reference: it holds by definition)
   is the answer once it is the next fastest, or after MAX_FINAL_CHECKS failed checks.

Every bundle and measurement lives under OUT/cache/ by content key, so a killed tune continues where it
stopped and a rerun only re-reads: the same inputs and seed give the same pick.

The uniform configurations are exported, benchmarked and quick-checked first, before any per-layer work.
A time budget (`time_budget_s`) bounds the whole run, and under one the pick is made twice: first among
the uniform configurations (step 4, final check included), so that a verified pick exists before the
per-layer search starts, and again after the search, where only the contenders faster than that pick
are checked and it stands unless one of them holds; a contender's final check starts only where, timed
again beside the pick alone, it is at least `min_gain` faster (`_clearly_faster`). Once the budget is
spent, the layers not yet measured stay FP32, the bisection stops at the candidates already verified, and
no further final check starts after the first; the document says where it stopped. On a real-size model on two cores the pick's
500-point final check alone is most of a 45-minute budget: verified first, the pick is what a user of
the budget gets, rather than the FP32 fall-back of a search that used the budget up. A rerun with a
larger budget continues from the cache.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import onnx

from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel
from deploy_robust import progress
from deploy_robust.progress import OutOfTime, deadline
from deploy_robust.tune import measure
from deploy_robust.tune.search import CostModel, frontier
from deploy_robust.tune.space import Plan, describe, gdws_option, parse_option, plan_key, search_layers, with_gdws_options
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.report import frontier_document, write_outputs
from deploy_robust.tune.workbench import Workbench

MAX_FINAL_CHECKS = 4   # standard-suite verifications of the fastest holding candidates before FP32 is the answer
PROBE_LAYERS = 4  # layers changed in a latency probe (the ResNet-18's plans rewrote 3 to 6, kept 2 to 7 in float)


def run_tune(loaded: LoadedModel, out: str | Path, calib: Dataset, data: Dataset, settings: TuneOptions,
             log: Callable[[str], None] = lambda message: None, cache: str | Path | None = None) -> dict[str, Any]:
    """Tune `loaded` for `settings.target`; writes OUT/best/, frontier.json, frontier.png and report.md (the last
    three also after each stage that measured candidates, so a run stopped early leaves its partial frontier).
    Bundles and measurements live in `cache` (default OUT/cache), which later tunes of the same model, target,
    data and seed may share: another objective, metric, budget or batch measures only what it adds."""
    _check_inputs(loaded, calib, data, settings)
    tune = Workbench(loaded, Path(out), calib, data, settings, log, None if cache is None else Path(cache))
    with tune.held():
        return _run(tune, calib, data, settings)


def _run(tune: Workbench, calib: Dataset, data: Dataset, settings: TuneOptions) -> dict[str, Any]:
    run = _Run(tune)
    try:
        # the reference and the last resort, whatever the budget; no phase line before the pins are checked
        # against its layers, so that a bad --pin is refused in one line however long the export takes
        fp32 = tune.bundle("fp32", "fp32", budgeted=False)
        run.layers = search_layers(onnx.load(str(fp32.model_path)), settings.target, settings.precision_space(),
                                   settings.pins)
        with deadline(tune.deadline):  # from here on, work past the budget stops at its next progress point
            _uniform(run, fp32)
            if settings.time_budget_s is None:
                _check_uniform(run, fp32)
            else:  # a verified pick first, the uniform configurations fastest first; the search may only improve on it
                while run.pick is None and not tune.stopped and _check_uniform(run, fp32, until_one_holds=True):
                    _pick(run, fp32, data)
            _search(run, fp32, calib)
            _pick(run, fp32, data)
    finally:
        progress.phase(None)
    if run.pick is None and tune.stopped:
        run.fall_back_to_fp32(fp32)
    document = run.document()
    write_outputs(tune.out, document, run.pick)
    return document


class _Run:
    """A tune's state as it goes: what each stage measured, so far; the document is written from it at any point."""

    def __init__(self, tune: Workbench) -> None:
        self.tune, self.started = tune, time.monotonic()
        self.layers: list = []
        self.configs: dict = {}
        self.loss: list = []
        self.model: CostModel | None = None
        self.points: list = []
        self.checked: dict = {}
        self.searched = None
        self.uniform_checks: dict = {}
        self.contenders: list = []
        self.pick = None
        self.final_reference: dict[str, Any] | None = None
        self.skip = 0
        self.pick_reason: str | None = None  # why the pick is what it is, where that is not the final check
        self.sensitivity_methods: dict[str, int] = {}  # how many layers were measured in memory, how many exported
        self.latency_check: dict[str, Any] = {}  # the latency model shared by profiles against by MACs
        self.timings: dict[str, float] = {}  # how long steps took in this run (not results: a rerun reads the cache)
        self.plain: dict[str, Bundle] = {}  # the uniform bundles by precision, FP32 first (the latency model's)
        self.rewrites: dict[str, Bundle] = {}  # the uniform GDWS rewrites by per-layer option
        self.uniform_ms: dict[str, float] | None = None  # their measured latencies
        self.unchecked: list = []  # (config, bundle) of the uniform configurations not quick-checked yet, in order
        self.final_checks = 0  # standard-suite checks started in this run
        self.search_bound: dict[str, Any] | None = None  # the holding uniform configuration the bisection must beat

    def fall_back_to_fp32(self, bundle) -> None:
        """The budget ran out before any candidate passed its final check: best/ is the FP32 reference `bundle`
        (the model itself, so its drop is zero by definition) where no pin lowers a layer, verified or not."""
        if not all(p == "fp32" for _, p in self.tune.s.pins):
            return
        checked = next((c for config, c in self.uniform_checks.items() if config.name == "uniform fp32"), None)
        self.pick = ("uniform fp32", checked or {"bundle": bundle})
        self.pick_reason = (f"the time budget ran out (in {', '.join(self.tune.stopped)}) before a faster candidate "
                            "passed its final check; best/ is the FP32 reference"
                            + ("" if checked else ", not verified in this run")
                            + " (a rerun with more time continues from the cache)")

    def phase(self, what: str) -> None:
        spent = time.monotonic() - self.started
        budget = self.tune.s.time_budget_s
        left = "" if budget is None else f", {max(budget - spent, 0):.0f} s of the {budget:g} s budget left"
        progress.phase(f"tune: {what} ({spent:.0f} s in{left})")

    def stage(self, name: str, work: Callable[[], Any], default: Any = None) -> Any:
        """`work()`, or `default` where the time budget stops it (recorded as where the run stopped)."""
        try:
            return work()
        except OutOfTime:
            self.tune.stopped_in(name)
            return default

    def document(self) -> dict[str, Any]:
        t, s = self.tune, self.tune.s
        document = frontier_document(s, self.layers, self.points, self.checked, self.uniform_checks,
                                     self.contenders, self.pick, self.final_reference, t)
        document["final_points"] = _final_points(s, self.skip)
        document["pick_reason"] = self.pick_reason
        if self.searched is not None:
            document["search_pick"] = {"plan": list(self.searched.plan), "predicted_latency_ms": self.searched.latency,
                                       "predicted_margin_loss": self.searched.loss}
        if self.model is not None:
            for row in document["measured"]:  # what the model expected of each plan measured, beside its measure
                if "plan" in row:
                    row["predicted_latency_ms"] = self.model.predict(tuple(row["plan"].values()))[0]
            document["cost_model"] = {"fp32_latency_ms": self.model.fp32_latency, "latency_ms": list(self.model.latency),
                                      "margin_loss": list(self.model.loss), "latency_check": self.latency_check}
        document["search_bound"] = self.search_bound
        document["time_budget"] = {"seconds": s.time_budget_s, "stopped_in": t.stopped}
        document["sensitivities"] = self.sensitivity_methods
        document["uniform_not_checked"] = [config.name for config, _ in self.unchecked]
        document["timings"] = self.timings
        return document

    def write_partial(self) -> None:
        """frontier.json and report.md as they stand (the plot and best/ are written once, at the end)."""
        write_outputs(self.tune.out, self.document() | {"in_progress": True}, None, plot=False)


def _uniform(run: _Run, fp32: Bundle) -> None:
    """Step 1's uniform configurations: exported, benchmarked interleaved, and verified like the candidates."""
    tune = run.tune
    configs = tune.configs()
    for i, config in enumerate(configs, start=1):
        run.phase(f"exporting {config.name} ({i}/{len(configs)})")
        bundle = run.stage("uniform exports", lambda: tune.config_bundle(config))
        if bundle is None:
            break
        run.configs[config] = bundle
    # the latency model's bundles: FP32 itself, the uniform precisions (under pins, all but the pinned layers), and
    # the uniform GDWS rewrites, whose layers become per-layer options once they are measured
    run.plain = {"fp32": fp32} | {c.precision: b for c, b in run.configs.items()
                                  if c.gdws is None and c.precision != "fp32"}  # fmt: skip
    run.rewrites = {_uniform_option(c): b for c, b in run.configs.items() if c.gdws is not None}
    benchmarked = run.plain | run.rewrites
    run.phase(f"benchmarking {len(benchmarked)} uniform bundles")
    run.uniform_ms = run.stage(
        "uniform latencies", lambda: dict(zip(benchmarked, tune.latencies(list(benchmarked.values()), "uniform")))
    )
    run.phase("quick verification of the FP32 reference")
    if run.stage("reference verification", lambda: tune.quick_verified(fp32)) is None:
        return
    run.unchecked = list(run.configs.items())
    if tune.s.time_budget_s is not None and run.uniform_ms is not None:  # under a budget, fastest first
        run.unchecked.sort(key=lambda item: run.uniform_ms[_uniform_option(item[0])])


def _check_uniform(run: _Run, fp32: Bundle, until_one_holds: bool = False) -> bool:
    """Quick-checks the uniform configurations not checked yet, in order: all of them, or (under a time budget) up
    to the next that holds, so that none slower than a pick is checked. Returns whether one was checked."""
    tune, done = run.tune, 0
    while run.unchecked:
        config, bundle = run.unchecked[0]
        run.phase(f"quick verification of {config.name} ({len(run.uniform_checks) + 1}/{len(run.configs)})")
        checked = run.stage("uniform verification", lambda: tune.quick_check(bundle, fp32))
        if checked is None:
            break
        run.unchecked.pop(0)
        run.uniform_checks[config] = {"bundle": bundle} | checked
        done += 1
        run.write_partial()
        if until_one_holds and checked["holds"]:
            break
    return done > 0


def _final_checks_stopped(run: _Run) -> bool:
    """Whether no further final check may start: one ran and the time budget is spent."""
    return run.final_checks > 0 and run.tune.out_of_time("final checks")


def _uniform_option(config) -> str:
    """The latency model's name of a uniform configuration: its precision, or its GDWS option."""
    return config.precision if config.gdws is None else gdws_option(config.gdws, config.precision)


def _search(run: _Run, fp32: Bundle, calib: Dataset) -> None:
    """Steps 1-3 per layer: the per-layer measurements, the frontier and its bisection."""
    tune, settings = run.tune, run.tune.s
    plain, rewrites, uniform_ms = run.plain, run.rewrites, run.uniform_ms
    plain_ms = None if uniform_ms is None else {p: uniform_ms[p] for p in plain}
    rewritten = {} if uniform_ms is None else {option: tune.gdws_layers(parse_option(option)[0]) for option in rewrites}
    run.layers = with_gdws_options(run.layers, {option: set(layers) for option, layers in rewritten.items()})
    run.phase(f"per-layer sensitivities of {len(run.layers)} layers")
    tune.use_uniform_grids(plain)  # their GPTQ-rounded weights and input scales, read back, for each layer
    started, misses = time.monotonic(), tune.cache.misses
    run.loss = _sensitivities(run, fp32, calib.take(settings.sensitivity_n))
    run.timings["sensitivities_s"] = time.monotonic() - started
    run.timings["sensitivities_measured"] = tune.cache.misses - misses  # the rest came from the cache
    if plain_ms is not None:
        run.phase("per-layer profiles of the uniform bundles")
        profiled, rewrite_profiles = run.stage("layer profiles", lambda: _profiled_changes(run, plain, rewrites)) or ({}, {})
        measured = {p: (b, plain_ms[p]) for p, b in plain.items() if p != "fp32"}
        saved = {option: (uniform_ms[option], {name: d["original_macs"] - d["macs"] for name, d in layers.items()})
                 for option, layers in rewritten.items()}
        latency = measure.latency_model(run.layers, measured, plain_ms["fp32"], profiled)
        latency = measure.with_gdws_latencies(run.layers, latency, saved, plain_ms, rewrite_profiles)
        by_macs = measure.latency_model(run.layers, measured, plain_ms["fp32"])
        by_macs = measure.with_gdws_latencies(run.layers, by_macs, saved, plain_ms)
        shared = {p: "runtime profile" if p in profiled else "MACs" for p in measured}
        shared |= {o: "runtime profile" if o in rewrite_profiles else "MACs saved" for o in rewrites}
        run.latency_check = {"shared_by": shared,
                             "by_profile": list(latency), "by_macs": list(by_macs)}
        latency = _probed(run, latency)
        run.model = CostModel(plain_ms["fp32"], latency, tuple(run.loss))
        run.points = frontier(run.model)
    points = _faster_than_holding(run)
    if points and "reference verification" not in tune.stopped:
        run.phase(f"bisection along {len(points)} of the {len(run.points)} frontier points")
        run.searched = _bisect(run, fp32, points)


def _faster_than_holding(run: _Run) -> list:
    """The frontier's points predicted faster than the fastest uniform configuration that already held its quick
    check: a plan the model expects no faster than one that holds cannot be the pick, and each check costs an
    export and a quick verification (ResNet-18 on ONNX Runtime at batch 1: three of the five plans the bisection
    checked, about 10 of its 16 minutes, were predicted slower than uniform INT8). The bound goes into the
    document (`search_bound`)."""
    measured = run.uniform_ms or {}
    holding = [(measured[_uniform_option(config)], config.name) for config, checked in run.uniform_checks.items()
               if checked["holds"] and _uniform_option(config) in measured]  # fmt: skip
    if not holding:
        return run.points
    bound_ms, name = min(holding)
    points = [point for point in run.points if point.latency < bound_ms]
    run.search_bound = {"uniform": name, "latency_ms": bound_ms, "frontier_points": len(run.points),
                        "predicted_faster": len(points)}  # fmt: skip
    if not points:
        run.phase(f"no frontier plan is predicted faster than {name}, which held: nothing to bisect")
    return points


def _pick(run: _Run, fp32: Bundle, data: Dataset) -> None:
    """Step 4: the holding candidates and the uniform configurations measured in one run; the fastest that holds
    its final check wins. Where a pick was already verified (a time budget's first pick), only the contenders
    faster than it are checked, and it stands unless one of them holds."""
    tune, settings = run.tune, run.tune.s
    holding = [(describe(run.layers, plan), c) for plan, c in run.checked.items() if c["holds"]]
    contenders = [*[(c.name, u) for c, u in run.uniform_checks.items()], *holding]
    if not contenders:
        return
    run.phase(f"benchmarking {len(contenders)} contenders in one run")
    measured = run.stage("final latencies", lambda: tune.latencies([c["bundle"] for _, c in contenders], "final"))
    if measured is None:
        return
    run.contenders = contenders
    for (_, c), ms in zip(contenders, measured):
        c["latency_ms"] = ms
    run.write_partial()
    order = sorted((c for c in contenders if c[1]["holds"]), key=lambda c: c[1]["latency_ms"])
    if settings.latency_budget_ms is not None:
        order = [c for c in order if c[1]["latency_ms"] <= settings.latency_budget_ms]
    # the final check on points the candidates were not chosen on, where the test set has enough of them
    run.skip = settings.n if len(data) >= settings.n + settings.final_n else 0
    secured = None if run.pick is None else (run.pick, run.final_reference)
    run.pick = _final_pick(run, order, fp32, secured)


def _check_inputs(loaded: LoadedModel, calib: Dataset, data: Dataset, settings: TuneOptions) -> None:
    if data.shape != loaded.spec.shape or calib.shape != loaded.spec.shape:
        raise UserError(f"images are {data.shape} (--data) and {calib.shape} (--calib); the model takes {loaded.spec.shape}")
    data.take(settings.final_n).check_labels(loaded.spec.num_classes, "the model")


def _final_points(settings: TuneOptions, skip: int) -> str:
    if skip:
        return f"test points {skip}..{skip + settings.final_n - 1}, disjoint from the candidates' 0..{settings.n - 1}"
    return (f"the first {settings.final_n} test points (the set has too few to keep them disjoint from the "
            f"candidates' {settings.n})")


def _profiled_changes(
    run: _Run, plain: dict[str, Bundle], rewrites: dict[str, Bundle]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Each layer's change against FP32 in the runtime's own per-layer profile: per uniform precision (`plain`), and
    per uniform GDWS rewrite (`rewrites`, option -> bundle; a rewritten layer: its gather, both convolutions and the
    reorder between them). Both empty where the FP32 profile's layer names do not lead back to the graph's nodes
    (ONNX Runtime renames fused ones); then no other bundle is profiled."""
    names = measure.node_names(onnx.load(str(plain["fp32"].model_path)), [layer.node for layer in run.layers])
    base = run.tune.layer_times(plain["fp32"], names)
    if base is None:
        return {}, {}
    precisions = {}
    for p, bundle in plain.items():
        times = run.tune.layer_times(bundle, names) if p != "fp32" else None
        if times is not None:
            precisions[p] = measure.profile_changes(base, times, run.layers)
    rewritten = {}
    for option, bundle in rewrites.items():
        graph = onnx.load(str(bundle.model_path))
        times = run.tune.layer_times(bundle, measure.rewritten_layer_names(graph, bundle.manifest.precision.layers))
        if times is not None and all(layer.name in times for layer in run.layers):
            rewritten[option] = {layer.name: times[layer.name] - base[layer.node] for layer in run.layers}
    return precisions, rewritten


def _sensitivities(run: _Run, fp32: Bundle, sample: Dataset) -> list[dict[str, float]]:
    """Per layer and option, the points' mean margin loss on `sample` (`measure.margin_drop`, the larger over
    `measure.sensitivity_metrics`) with only that layer lowered (in memory where the torch model holds the layer,
    else from an exported single-layer bundle); a layer the time budget leaves unmeasured stays FP32 (`run.layers`
    is updated in place)."""
    tune, layers = run.tune, run.layers
    in_memory = [tune.lowerable(fp32, layer.name) for layer in layers]
    run.sensitivity_methods = {"in-memory": sum(in_memory), "exported": len(layers) - sum(in_memory)}
    metrics = measure.sensitivity_metrics(tune.s.metric, tune.s.max_clean_drop)

    def fp32_margins(lowered: bool) -> dict[str, list[float]]:
        if lowered:
            return tune.lowered_margins(fp32, None, "fp32", sample, metrics)
        return {m: tune.margins(fp32, sample, m) for m in metrics}

    # the FP32 margins each way of measuring compares with (the same model: equal up to rounding)
    base = {way: run.stage("sensitivities", lambda: fp32_margins(way)) for way in set(in_memory)}
    loss = []
    shown = progress.bar(sum(len(layer.allowed) - ("fp32" in layer.allowed) for layer in layers), "sensitivities")
    try:
        for i in range(len(layers)):
            loss.append(_layer_sensitivity(run, fp32, sample, i, in_memory[i], base[in_memory[i]], shown))
    finally:
        shown.close()
    return loss


def _layer_sensitivity(run: _Run, fp32: Bundle, sample: Dataset, i: int, in_memory: bool, base, shown):
    """Layer i's margin loss per option (0 for fp32) against the FP32 margins `base` (metric -> per point);
    where the time budget stops it, the layer stays FP32."""
    tune, layers = run.tune, run.layers
    layer = layers[i]
    if "fp32" in layer.allowed and (base is None or tune.out_of_time("sensitivities")):
        layers[i] = layer = replace(layer, allowed=("fp32",))  # not measured in time: it stays FP32

    def measured(p: str) -> float:
        shown.update()  # counts the option as it starts: a deadline point, inside the stage, before any work
        shown.doing(f"{layer.name} {p}")
        if in_memory:
            lowered = tune.lowered_margins(fp32, layer.name, p, sample, tuple(base))
        else:
            plan = tuple(p if j == i else "fp32" for j in range(len(layers)))
            bundle = tune.bundle(plan_key(plan), p, plan, layers, loaded=tune.plan_model(layers, plan))
            lowered = {m: tune.margins(bundle, sample, m) for m in base}
        return max(measure.margin_drop(base[m], lowered[m]) for m in base)

    options = {p: 0.0 if p == "fp32" else run.stage("sensitivities", lambda: measured(p)) for p in layer.allowed}
    if any(v is None for v in options.values()):  # stopped inside this layer: it stays FP32
        layers[i], options = replace(layer, allowed=("fp32",)), {"fp32": 0.0}
    return options


def _probed(run: _Run, latency: tuple[dict[str, float], ...]) -> tuple[dict[str, float], ...]:
    """The latency model corrected by what mixed plans measure: each GDWS option's probe, then the float islands'
    probe (on the model the GDWS probes corrected); both recorded in `run.latency_check`."""
    run.phase("latency probes of the GDWS options in mixed plans")
    probes = run.stage("latency probes", lambda: _gdws_probes(run, latency)) or {}
    latency = measure.with_probe_penalties(latency, {o: probe["penalty_ms"] for o, probe in probes.items()})
    run.latency_check["gdws_probes"] = probes
    run.phase("latency probe of FP32 layers among lower-precision neighbours")
    island = run.stage("latency probes", lambda: _island_probe(run, latency))
    if island is not None:
        latency = measure.with_island_penalty(latency, island["penalty_ms"])
        run.latency_check["island_probe"] = island
    return latency


def _island_probe(run: _Run, latency: tuple[dict[str, float], ...]) -> dict[str, Any] | None:
    """What a few layers kept FP32 among lower-precision neighbours cost beyond the saving they give up, measured.

    The model takes a layer's FP32 term as no change from the FP32 bundle, so a plan with a layer kept in float
    among INT8 ones is predicted at INT8's time less that layer's INT8 saving; the runtime also converts the
    activations at each end of the island (on the CIFAR ResNet-18 on OpenVINO, INT8 with its two smallest layers
    in float measured 0.98x INT8, predicted 1.00x). So a probe plan (the fastest measured precision everywhere it
    may be; at FP32 the PROBE_LAYERS layers, at most half, with the largest sensitivity at it, those a search keeps
    in float) is measured against the same plan without the islands; the difference from the predicted change,
    per island, is added to the FP32 term of every layer that has another option (`measure.with_island_penalty`).
    None where no precision below FP32 was measured."""
    layers, uniform_ms = run.layers, run.uniform_ms or {}
    lower = sorted((uniform_ms[p], p) for p in run.plain if p != "fp32" and p in uniform_ms)
    if not lower or not run.loss:
        return None
    low = lower[0][1]
    base = tuple(low if low in layer.allowed else "fp32" if "fp32" in layer.allowed else layer.allowed[0]
                 for layer in layers)  # fmt: skip
    sensitive = sorted(((run.loss[i].get(low, 0.0), i) for i, layer in enumerate(layers)
                        if base[i] == low and "fp32" in layer.allowed), reverse=True)  # fmt: skip
    kept = sorted(i for _, i in sensitive[: min(PROBE_LAYERS, len(sensitive) // 2)])  # islands: a minority
    if not kept:
        return None
    probe = tuple("fp32" if i in kept else p for i, p in enumerate(base))
    measured = _measured_change(run, latency, base, probe)
    predicted = sum(latency[i]["fp32"] - latency[i][low] for i in kept)
    residual = (measured["measured_change_ms"] - predicted) / len(kept)
    # Applied only where positive: an island's conversions cost time, never save it. Islands measured cheaper than
    # predicted say the islands' own lowered terms were overstated (or the probe's noise), and spread over every
    # layer as a saving they made float look faster than INT8 (ResNet-18 on ONNX Runtime at batch 1: -0.048 ms per
    # island, and a plan with five float layers predicted 1.12x uniform INT8 measured 0.95x).
    return {"precision": low, "layers": [layers[i].name for i in kept], **measured, "predicted_change_ms": predicted,
            "residual_ms": residual, "penalty_ms": max(residual, 0.0)}  # fmt: skip


def _measured_change(run: _Run, latency: tuple[dict[str, float], ...], base: Plan, probe: Plan) -> dict[str, float]:
    """Plans `base` and `probe` exported and benchmarked in one run; the probe's change in the model's ms (the run
    may find the machine faster or slower than the uniform bundles' run: scaled by the base plan's predicted over
    its measured latency)."""
    tune, layers = run.tune, run.layers
    bundles = [tune.bundle(plan_key(plan), "mixed", plan, layers, loaded=tune.plan_model(layers, plan))
               for plan in (base, probe)]  # fmt: skip
    base_ms, probe_ms = tune.latencies(bundles, "probe")
    scale = (run.uniform_ms["fp32"] + sum(latency[i][p] for i, p in enumerate(base))) / base_ms
    return {"base_ms": base_ms, "probe_ms": probe_ms, "scale_to_model": scale,
            "measured_change_ms": (probe_ms - base_ms) * scale}  # fmt: skip


def _gdws_probes(run: _Run, latency: tuple[dict[str, float], ...]) -> dict[str, dict[str, Any]]:
    """Per GDWS option, what rewriting a few layers among neighbours at the option's precision costs, measured.

    The uniform rewrite the option's latency terms come from has no unrewritten neighbours, and a per-layer
    profile books a rewrite's layout reorders to the layers next to it: on the CIFAR ResNet-18 on OpenVINO the
    additive model predicted a plan with 5 layers rewritten 1.21x faster than uniform INT8 and it measured 0.92x.
    So a probe plan (every layer at the option's precision where it may be, else as pinned or FP32; the
    PROBE_LAYERS layers the model expects the most from rewritten) is exported and benchmarked against the same
    plan without the rewrites, in one interleaved run; the difference between the measured change (in the model's
    ms: scaled by the base plan's predicted over its measured latency) and the predicted one, per rewritten layer,
    is added to the option's term on every layer (`measure.with_probe_penalties`)."""
    layers = run.layers
    options = sorted({o for layer in layers for o in layer.allowed if parse_option(o)[0] is not None})
    probes = {}
    for option in options:
        precision = parse_option(option)[1]
        base = tuple(precision if precision in layer.allowed else "fp32" if "fp32" in layer.allowed
                     else layer.allowed[0] for layer in layers)  # fmt: skip
        gains = sorted((latency[i][option] - latency[i][base[i]], i) for i, layer in enumerate(layers)
                       if option in layer.allowed)  # fmt: skip
        chosen = [(gain, i) for gain, i in gains[:PROBE_LAYERS] if gain < 0]
        if not chosen:
            continue
        rewritten, predicted = [i for _, i in chosen], sum(gain for gain, _ in chosen)
        probe = tuple(option if i in rewritten else p for i, p in enumerate(base))
        measured = _measured_change(run, latency, base, probe)
        probes[option] = {"layers": [layers[i].name for i in rewritten], **measured, "predicted_change_ms": predicted,
                          "penalty_ms": (measured["measured_change_ms"] - predicted) / len(rewritten)}  # fmt: skip
    return probes


def _bisect(run: _Run, fp32: Bundle, points: list):
    """Bisection along frontier `points` (fastest first) for the fastest plan whose engine holds on the quick suite;
    every plan checked goes into `run.checked` with its verdict. Returns the point the search ended on."""
    tune, layers = run.tune, run.layers

    def check(plan: Plan) -> bool | None:
        if plan not in run.checked:
            def assessed() -> dict[str, Any]:
                bundle = tune.bundle(plan_key(plan), "mixed", plan, layers, loaded=tune.plan_model(layers, plan))
                return {"bundle": bundle} | tune.quick_check(bundle, fp32)

            result = run.stage("bisection", assessed)
            if result is None:
                return None
            run.checked[plan] = result
            run.write_partial()
        return run.checked[plan]["holds"]

    lo, hi = 0, len(points) - 1  # the slowest point is the most robust the model expects
    while lo < hi and not tune.out_of_time("bisection"):
        mid = (lo + hi) // 2
        holds = check(points[mid].plan)
        if holds is None:
            break
        if holds:
            hi = mid
        else:
            lo = mid + 1
    if not tune.out_of_time("bisection"):
        check(points[lo].plan)
    return points[lo]


def _final_pick(run: _Run, order: list, fp32: Bundle, secured: tuple | None = None):
    """The fastest candidate (of those within the latency budget) that holds on the standard suite, paired against
    FP32 on the same points (`Workbench.final_reference`: FP32 attacked where the candidate lost, and everywhere
    only when the upper bound that gives breaks the budget). FP32 is the reference itself (it holds by definition,
    unless a pin lowers a layer), so reaching it, or running out of final checks or time, makes it the answer, when
    the latency budget allows it; it is then verified on the final points itself. `secured`: (a pick already
    verified, the FP32 reference it was paired with), the answer once reached or once the walk stops short."""
    fp32_is_reference = all(p == "fp32" for _, p in run.tune.s.pins)
    checks = 0

    def standing():
        run.final_reference = secured[1]
        return secured[0]

    for name, c in order:
        if secured is not None and c is secured[0][1]:
            return standing()  # nothing faster held: the verified pick stands
        if "final" in c and not c["final"]["holds"]:
            continue  # failed its final check earlier in this run (a time budget's first pick)
        reference_reached = fp32_is_reference and name == "uniform fp32"
        if reference_reached or checks == MAX_FINAL_CHECKS or _final_checks_stopped(run):
            break
        if secured is not None:
            worth = _clearly_faster(run, name, c, secured[0])
            if worth is None:
                break
            if not worth:
                continue
        final = _final_check(run, name, c, fp32, checks + 1)
        if final is None:
            break
        checks += 1
        if final["holds"]:
            return name, c
    if secured is not None:
        return standing()
    return _fp32_answer(run, order, fp32) if fp32_is_reference else None


def _final_check(run: _Run, name: str, c: dict, fp32: Bundle, number: int) -> dict | None:
    """Candidate `c`'s standard-suite check on the final points, paired against FP32 (attacked where `c` lost, an
    upper bound of the drop, and everywhere only where that bound breaks the budget); its verdict, also kept as
    c["final"], or None where the time budget stopped it."""
    tune, n = run.tune, run.tune.s.final_n
    run.phase(f"standard-suite verification of {name} on {n} points (final check {number})")
    figures = run.stage("final checks", lambda: tune.verified(c["bundle"], "standard", n, run.skip))
    if figures is None:
        return None
    run.final_checks += 1
    final = None
    for everywhere in (False, True):
        run.phase(f"the FP32 reference on the same points, {'everywhere' if everywhere else 'where it lost'}")
        reference = run.stage("final reference", lambda: tune.final_reference(fp32, figures, run.skip, everywhere))
        if reference is None:
            break
        run.final_reference, final = reference, tune.assess(reference, figures)
        if final["holds"]:  # within the budget already on the upper bound, or on the exact drop
            break
    if final is not None:
        c["final"] = final | {"reference_attacked": run.final_reference["attacked"]}
        run.write_partial()
    return final


def _fp32_answer(run: _Run, order: list, fp32: Bundle):
    """The FP32 reference as the pick (no faster candidate held), verified on the final points itself unless the
    time budget stops that; None where the latency budget left it out of `order`."""
    tune, n = run.tune, run.tune.s.final_n
    fp32_entry = next((e for e in order if e[0] == "uniform fp32"), None)
    if fp32_entry is None:
        return None
    figures = None
    if not _final_checks_stopped(run):
        run.phase(f"standard-suite verification of the FP32 reference on {n} points")
        figures = run.stage("final reference", lambda: tune.verified(fp32, "standard", n, run.skip))
    if figures is None:
        run.pick_reason = ("the time budget ran out before the FP32 reference's own final check; best/ is the FP32 "
                           "reference, not verified in this run (a rerun with more time continues from the cache)")
    else:
        run.final_reference = figures | {"attacked": "every point"}
        fp32_entry[1]["final"] = tune.assess(figures, figures) | {"reference_attacked": "every point"}
    return fp32_entry


def _clearly_faster(run: _Run, name: str, c: dict, pick: tuple) -> bool | None:
    """Whether contender `c`, timed again beside the verified `pick` alone, is at least `min_gain` faster: the
    contenders' run times many bundles, and a few percent there is within a busy machine's noise, where the
    contender's final check costs as much as the pick's (half an hour for a ResNet-18 on two cores). None where
    the time budget stopped the timing. The figures go into the contender's row (`timed_against_pick`)."""
    pick_name, picked = pick
    if c["bundle"].manifest.model.sha256 == picked["bundle"].manifest.model.sha256:
        return False  # the pick's own graph under another name: faster only by noise
    run.phase(f"timing {name} again beside the verified pick ({pick_name})")
    ms = run.stage("final latencies", lambda: run.tune.latencies([c["bundle"], picked["bundle"]], "against-pick"))
    if ms is None:
        return None
    gain = ms[1] / ms[0] - 1
    c["timed_against_pick"] = {"pick": pick_name, "latency_ms": ms[0], "pick_latency_ms": ms[1], "gain": gain,
                               "min_gain": run.tune.s.min_gain, "final_check": gain >= run.tune.s.min_gain}
    run.write_partial()
    return c["timed_against_pick"]["final_check"]
