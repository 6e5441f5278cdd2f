"""A tune, end to end: measure cheaply, search, verify candidates on the engine, verify the pick in full.

1. Bundles of the uniform configurations (fp32, fp16, int8, int4; with `gdws` in the space, GDWS rewrites
   at a few MAC budgets in fp32 and int8), benchmarked interleaved on the target runtime; each layer's
   latency change and robustness sensitivity (tune.measure). Pinned layers keep their pin everywhere.
2. The frontier of plans under the additive model (tune.search).
3. Along the frontier, a bisection for the fastest plan whose engine still holds: quick suite on `n`
   test points, paired with the FP32 bundle on the same points, robust and clean drops within budget.
   The uniform configurations are verified the same way.
4. The candidates that hold and the uniform configurations, benchmarked again in one interleaved run;
   the fastest wins. It is verified with the standard suite on `final_n` points, paired with FP32 on the
   same points, and accepted only when the paired drop (point estimate; its 95% interval is reported)
   is within the budget; otherwise the next fastest is tried. FP32 (the reference: it holds by definition)
   is the answer once it is the next fastest, or after MAX_FINAL_CHECKS failed checks.

Every bundle and measurement lives under OUT/cache/ by content key, so a killed tune continues where it
stopped and a rerun only re-reads: the same inputs and seed give the same pick.

A time budget (`time_budget_s`) bounds the whole run: once spent, the layers not yet measured stay FP32,
the bisection stops at the candidates already verified, and no further final check starts after the
first; the document says where it stopped. A rerun with a larger budget continues from the cache.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import onnx

from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel
from deploy_robust.progress import bar
from deploy_robust.tune import measure
from deploy_robust.tune.search import CostModel, frontier
from deploy_robust.tune.space import Plan, describe, plan_key, search_layers
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.report import frontier_document, write_outputs
from deploy_robust.tune.workbench import Workbench

MAX_FINAL_CHECKS = 4   # standard-suite verifications of the fastest holding candidates before FP32 is the answer


def run_tune(loaded: LoadedModel, out: str | Path, calib: Dataset, data: Dataset, settings: TuneOptions,
             log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Tune `loaded` for `settings.target`; writes OUT/best/, frontier.json, frontier.png and report.md."""
    _check_inputs(loaded, calib, data, settings)
    out = Path(out)
    tune = Workbench(loaded, out, calib, data, settings, log)
    fp32 = tune.bundle("fp32", "fp32")
    layers = search_layers(onnx.load(str(fp32.model_path)), settings.target, settings.precision_space(), settings.pins)
    shown = bar(6, desc="tune")

    # 1. uniform configurations and the per-layer measurements
    configs = {c: tune.config_bundle(c) for c in tune.configs()}
    # the latency model's bundles: FP32 itself and the uniform precisions (under pins, all but the pinned layers)
    plain = {"fp32": fp32} | {c.precision: b for c, b in configs.items() if c.gdws is None and c.precision != "fp32"}
    plain_ms = dict(zip(plain, tune.latencies(list(plain.values()), "uniform")))
    shown.update()
    loss = _sensitivities(tune, fp32, layers, calib.take(settings.sensitivity_n))
    latency = measure.latency_model(layers, {p: (b, plain_ms[p]) for p, b in plain.items() if p != "fp32"},
                                    plain_ms["fp32"])
    shown.update()

    # 2. the frontier under the additive model
    model = CostModel(plain_ms["fp32"], latency, tuple(loss))
    points = frontier(model)
    shown.update()

    # 3. bisection along the frontier (fastest first) for the fastest plan whose engine holds
    reference = tune.verified(fp32, "quick", settings.n)
    checked, searched = _bisect(tune, points, layers, reference)
    uniform_checks = {c: {"bundle": bundle} | tune.assess(reference, tune.verified(bundle, "quick", settings.n))
                      for c, bundle in configs.items()}
    shown.update()

    # 4. the holding candidates and the uniform configurations, measured in one run; the fastest wins
    holding = [(describe(layers, plan), c) for plan, c in checked.items() if c["holds"]]
    contenders = [*[(c.name, u) for c, u in uniform_checks.items()], *holding]
    measured = tune.latencies([c["bundle"] for _, c in contenders], "final")
    for (_, c), ms in zip(contenders, measured):
        c["latency_ms"] = ms
    shown.update()
    order = sorted((c for c in contenders if c[1]["holds"]), key=lambda c: c[1]["latency_ms"])
    if settings.latency_budget_ms is not None:
        order = [c for c in order if c[1]["latency_ms"] <= settings.latency_budget_ms]
    # the final check on points the candidates were not chosen on, where the test set has enough of them
    skip = settings.n if len(data) >= settings.n + settings.final_n else 0
    final_reference = tune.verified(fp32, "standard", settings.final_n, skip)
    pick = _final_pick(tune, order, final_reference, skip)
    shown.update()
    shown.close()
    document = frontier_document(settings, layers, points, checked, uniform_checks, contenders, pick, final_reference, tune)
    document["final_points"] = _final_points(settings, skip)
    document["search_pick"] = {"plan": list(searched.plan), "predicted_latency_ms": searched.latency,
                               "predicted_margin_loss": searched.loss}
    document["cost_model"] = {"fp32_latency_ms": model.fp32_latency, "latency_ms": list(model.latency),
                              "margin_loss": list(model.loss)}
    document["time_budget"] = {"seconds": settings.time_budget_s, "stopped_in": tune.stopped}
    write_outputs(out, document, pick)
    return document


def _check_inputs(loaded: LoadedModel, calib: Dataset, data: Dataset, settings: TuneOptions) -> None:
    if data.shape != loaded.spec.shape or calib.shape != loaded.spec.shape:
        raise UserError(f"images are {data.shape} (--data) and {calib.shape} (--calib); the model takes {loaded.spec.shape}")
    data.take(settings.final_n).check_labels(loaded.spec.num_classes, "the model")


def _final_points(settings: TuneOptions, skip: int) -> str:
    if skip:
        return f"test points {skip}..{skip + settings.final_n - 1}, disjoint from the candidates' 0..{settings.n - 1}"
    return (f"the first {settings.final_n} test points (the set has too few to keep them disjoint from the "
            f"candidates' {settings.n})")


def _sensitivities(tune: Workbench, fp32: Bundle, layers: list, sample: Dataset) -> list[dict[str, float]]:
    """Per layer and precision, the drop of the mean margin on `sample` with only that layer lowered; a layer the
    time budget leaves unmeasured stays FP32 (`layers` is updated in place)."""
    base_margin = tune.margin(fp32, sample)
    loss = []
    for i, layer in enumerate(layers):
        if "fp32" in layer.allowed and tune.out_of_time("sensitivities"):
            layers[i] = layer = replace(layer, allowed=("fp32",))  # not measured in time: it stays FP32
        options = {}
        for p in layer.allowed:
            plan = tuple(p if j == i else "fp32" for j in range(len(layers)))
            options[p] = 0.0 if p == "fp32" else max(base_margin - tune.margin(
                tune.bundle(plan_key(plan), p, plan, layers), sample), 0.0)
        loss.append(options)
    return loss


def _bisect(tune: Workbench, points: list, layers: list, reference: dict[str, Any]):
    """Bisection along the frontier (fastest first) for the fastest plan whose engine holds on the quick suite;
    every plan checked, with its verdict, and the point the search ended on."""
    checked: dict[Plan, dict[str, Any]] = {}

    def check(plan: Plan) -> bool:
        if plan not in checked:
            bundle = tune.bundle(plan_key(plan), "mixed", plan, layers)
            checked[plan] = {"bundle": bundle} | tune.assess(reference, tune.verified(bundle, "quick", tune.s.n))
        return checked[plan]["holds"]

    lo, hi = 0, len(points) - 1          # the slowest point keeps every unpinned layer FP32
    while lo < hi and not tune.out_of_time("bisection"):
        mid = (lo + hi) // 2
        if check(points[mid].plan):
            hi = mid
        else:
            lo = mid + 1
    if not tune.out_of_time("bisection"):
        check(points[lo].plan)
    return checked, points[lo]


def _final_pick(tune: Workbench, order: list, final_reference: dict[str, Any], skip: int):
    """The fastest candidate (of those within the latency budget) that holds on the standard suite. FP32 is the
    reference itself (it holds by definition, unless a pin lowers a layer), so reaching it, or running out of final
    checks or time, makes it the answer, when the latency budget allows it."""
    fp32_is_reference = all(p == "fp32" for _, p in tune.s.pins)
    pick, checks = None, 0
    for name, c in order:
        reference_reached = fp32_is_reference and name == "uniform fp32"
        if reference_reached or checks == MAX_FINAL_CHECKS or (checks and tune.out_of_time("final checks")):
            fp32_entry = next((e for e in order if e[0] == "uniform fp32"), None) if fp32_is_reference else None
            if fp32_entry is not None:
                fp32_entry[1]["final"] = tune.assess(final_reference, final_reference)
                pick = fp32_entry
            break
        c["final"] = tune.assess(final_reference, tune.verified(c["bundle"], "standard", tune.s.final_n, skip))
        checks += 1
        if c["final"]["holds"]:
            pick = (name, c)
            break
    return pick
