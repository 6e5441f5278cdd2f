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

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import onnx

from deploy_robust.bench.plots import tune_frontier_plot
from deploy_robust.bundle import Bundle, open_bundle
from deploy_robust.bundle.store import write_bundle, write_file_atomic
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.private_files import check_folders_below, read_private, sha256_of, write_private
from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.ingest.kinds import attack_plan_for
from deploy_robust.progress import bar
from deploy_robust.targets import get_target
from deploy_robust.tune import measure
from deploy_robust.tune.search import CostModel, frontier
from deploy_robust.transforms.gdws.alphas import AlphaSettings
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
from deploy_robust.tune.space import (GDWS, GDWS_BUDGETS, UNIFORM, Pins, Plan, check_space, describe, pinned_plan_file,
                                      plan_file, plan_key, search_layers)
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

SCHEMA = "deploy-robust/tune"
MAX_FINAL_CHECKS = 4   # standard-suite verifications of the fastest holding candidates before FP32 is the answer


@dataclass(frozen=True)
class TuneOptions:
    threat: ThreatModel
    target: str = "ort-cpu"
    max_robust_drop: float = 0.01
    max_clean_drop: float = 0.01
    batch: int = 1
    objective: str = "latency"        # "latency" (ms per batch) or "throughput" (ms per image)
    metric: str = "robust"            # what the sensitivities and the budget check: "robust" or "clean"
    space: tuple[str, ...] | None = None
    n: int = 200                      # test points for the candidates' quick verification
    final_n: int = 500                # test points for the pick's standard verification
    sensitivity_n: int = 64           # calibration images for the per-layer sensitivities
    seed: int = 0
    threads: int | None = None
    bench_seconds: float = 2.0        # per bundle and batch in each interleaved benchmark (3 rounds)
    latency_budget_ms: float | None = None   # the pick must also be at most this fast (in the objective's unit)
    pins: Pins = ()                   # (layer, precision): fixed in every plan and configuration
    time_budget_s: float | None = None
    gdws_budgets: tuple[float, ...] = GDWS_BUDGETS   # with `gdws` in the space

    def precision_space(self) -> tuple[str, ...] | None:
        """The per-layer precisions asked for (None: every one the target runs)."""
        if self.space is None or "precision" in self.space:
            return None
        return tuple(p for p in self.space if p != GDWS)

    @property
    def with_gdws(self) -> bool:
        return self.space is not None and GDWS in self.space

    def __post_init__(self) -> None:   # every setting checked once, when the options are made
        if self.objective not in ("latency", "throughput"):
            raise UserError(f"--objective must be latency or throughput; got {self.objective}")
        if self.metric not in ("robust", "clean"):
            raise UserError(f"--objective-metric must be robust or clean; got {self.metric}")
        for name, value in (("--max-robust-drop", self.max_robust_drop), ("--max-clean-drop", self.max_clean_drop)):
            if not 0 <= value <= 1:
                raise UserError(f"{name} must be in [0, 1]; got {value:g} (did you mean {value / 100:g}?)")
        for name, value in (("--batch", self.batch), ("--n", self.n), ("--final-n", self.final_n)):
            if value < 1:
                raise UserError(f"{name} must be positive; got {value}")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise UserError(f"--latency-budget-ms must be positive; got {self.latency_budget_ms:g}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise UserError(f"--time-budget must be positive; got {self.time_budget_s:g} s")
        if self.with_gdws and not all(0 < b < 1 for b in self.gdws_budgets):
            raise UserError(f"--gdws-budgets are fractions of MACs kept, in (0, 1); got {list(self.gdws_budgets)}")
        get_target(self.target)
        if self.space is not None:
            check_space(self.target, tuple(p for p in self.space if p != "precision"))


@dataclass(frozen=True)
class Config:
    """A configuration the searched plans are compared with: one precision for every layer but the pinned
    ones, on the model itself or on its GDWS rewrite keeping `gdws` of the rewritable MACs."""
    precision: str
    gdws: float | None = None

    @property
    def name(self) -> str:
        return f"uniform {self.precision}" if self.gdws is None else f"uniform gdws{self.gdws:g} {self.precision}"


class _Tune:
    def __init__(self, loaded: LoadedModel, out: Path, calib: Dataset, data: Dataset, settings: TuneOptions,
                 log: Callable[[str], None]) -> None:
        self.loaded, self.out, self.calib, self.data, self.s, self.log = loaded, out, calib, data, settings, log
        target = get_target(settings.target)
        self.precisions, self.export_target, self.backend = target.precisions, target.profile, target.backend
        self.deadline = None if settings.time_budget_s is None else time.monotonic() + settings.time_budget_s
        self.stopped: list[str] = []      # where the time budget cut the run short
        self._gdws_models: dict[float, LoadedModel] = {}
        # every cache folder a real folder of this user's, never a link (a planted one is refused in one line)
        check_folders_below(out, "cache/bundles")
        self.plans = check_folders_below(out, "cache/plans")
        identity = json.dumps({"model": loaded.source.get("sha256") or loaded.source.get("file"), "target": settings.target,
                               "calib": [calib.name, len(calib)], "data": [data.name, len(data)], "seed": settings.seed},
                              sort_keys=True)
        recorded = out / "cache" / "identity.json"
        if os.path.lexists(recorded) and read_private(recorded) != identity.encode():
            raise UserError(f"{out} holds a tune of another model, target, data or seed; give a new -o")  # never reuse it
        write_private(recorded, identity)
        self.cache = measure.Cache(out / "cache" / "measurements.json")
        self.recomputed_bundles = 0
        # what a sensitivity depends on besides the bundle itself (a new budget or batch reuses them all)
        key = {"calib": [calib.name, len(calib)], "n": settings.sensitivity_n, "seed": settings.seed,
               "threat": [settings.threat.norm, settings.threat.eps]}
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def out_of_time(self, stage: str) -> bool:
        """Whether the time budget is spent; the first time a stage finds it so, that is recorded."""
        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        if stage not in self.stopped:
            self.stopped.append(stage)
        return True

    def bundle(self, name: str, precision: str, plan: Plan | None = None, layers=None, *, plan_text: str | None = None,
               loaded: LoadedModel | None = None) -> Bundle:
        """The cached bundle `name`, exported on first use (a plan as a tuple over `layers`, or as `--plan` text)."""
        path = self.out / "cache" / "bundles" / name
        record = f"bundle/{name}"
        if os.path.lexists(path):
            # reused only when its manifest is the one this user's tune exported here (signed in the cache), so a
            # bundle swapped in with a manifest of its own is exported again, never measured or shipped
            if self.cache.values.get(record) == sha256_of(path / "manifest.json") and not path.is_symlink():
                self.cache.hits += 1
                return open_bundle(path)
            self.recomputed_bundles += 1
            self.log(f"tune: cached bundle {name} is not the one this tune exported; exporting it again")
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        if plan is not None:
            plan_text = plan_file(layers, plan)
        plan_path = None
        if plan_text is not None:
            plan_path = write_private(self.plans / f"{name}.json", plan_text)
        bundle = export_bundle(loaded or self.loaded, path,
                               ExportOptions("mixed" if plan_path else precision, self.export_target,
                                             plan_file=plan_path, seed=self.s.seed,
                                             calibration=CalibrationOptions(n=256)),
                               calib=None if precision in ("fp32", "fp16") else self.calib)
        self.cache.put(record, sha256_of(path / "manifest.json"))
        return bundle

    def configs(self) -> list[Config]:
        """The uniform configurations of this tune (under pins: every layer but the pinned ones)."""
        space = self.s.precision_space()
        chosen = [Config(p) for p in UNIFORM if p == "fp32" or space is None or p in space]
        if self.s.with_gdws:
            chosen += [Config(p, b) for b in self.s.gdws_budgets for p in ("fp32", "int8")
                       if p == "fp32" or (p in self.precisions and (space is None or p in space))]
        # under pins, a configuration is exported as a plan, so its precision must be one the target runs per layer
        return [c for c in chosen if not self.s.pins or c.precision in self.precisions]

    def config_bundle(self, config: Config) -> Bundle:
        pins = self.s.pins
        planned = any(p != config.precision for _, p in pins)
        name = config.precision if config.gdws is None else f"gdws{config.gdws:g}-{config.precision}"
        if planned:
            name += "-pins-" + hashlib.sha256(json.dumps(pins).encode()).hexdigest()[:8]
        loaded = None if config.gdws is None else self.gdws_model(config.gdws)
        return self.bundle(name, config.precision, plan_text=pinned_plan_file(config.precision, pins) if planned else None,
                           loaded=loaded)

    def gdws_model(self, budget: float) -> LoadedModel:
        """The model with its convolutions GDWS-rewritten to keep `budget` of their MACs (robustness-aware
        channel weights from PGD points of the calibration images; pinned layers are left as they are)."""
        if budget not in self._gdws_models:
            settings = AlphaSettings(self.s.threat.eps, self.s.threat.norm, 10, 128, self.s.seed)
            request = GDWSRequest(budget=budget, alpha_data=self.calib, alpha_settings=settings,
                                  skip=tuple(name for name, _ in self.s.pins))
            self._gdws_models[budget] = rewrite_model(self.loaded, request, self.log)[0]
        return self._gdws_models[budget]

    def verified(self, bundle: Bundle, suite: str, n: int, skip: int = 0) -> dict[str, Any]:
        """verify's figures on test points skip..skip+n (cached by the bundle's content and the settings)."""
        def compute():
            data = self.data.skip(skip) if skip else self.data
            doc = run_verify(bundle, data, self.s.threat,
                             VerifyOptions(n=n, suite=suite, backend=self.backend, sweep=None, seed=self.s.seed,
                                           resume=True, layout="contiguous"),
                             defense_plan=attack_plan_for(bundle.manifest))   # e.g. an ensemble's majorities
            return {k: doc[k] for k in ("robust_accuracy", "robust_accuracy_ci95", "clean_accuracy",
                                        "clean_accuracy_ci95", "per_example")} | {"flags": [f["flag"] for f in doc["flags"]]}
        return self.cache.get(f"verify/{bundle.manifest.model.sha256}/{suite}/{skip}+{n}/{self.s.threat.norm}/"
                              f"{self.s.threat.eps}/{self.s.seed}/{self.backend}", compute)

    def latencies(self, bundles: list[Bundle], tag: str) -> list[float]:
        key = f"latency/{tag}/" + ",".join(b.manifest.model.sha256[:12] for b in bundles)
        return self.cache.get(f"{key}/{self.backend}/{self.s.batch}/{self.s.objective}", lambda: measure.latencies(
            bundles, self.backend, self.s.batch, self.s.objective, duration=self.s.bench_seconds, threads=self.s.threads))

    def margin(self, bundle: Bundle, sample: Dataset) -> float:
        return self.cache.get(f"margin/{bundle.manifest.model.sha256}/{self.s.metric}/{self.key}",
                              lambda: measure.twin_margin(bundle, sample, self.s.threat, self.s.metric, self.s.seed))

    def assess(self, reference: dict, candidate: dict) -> dict[str, Any]:
        """The candidate's verify figures and paired drops against the reference, and whether it holds the budget."""
        robust = measure.paired_drop(reference, candidate, "robust")
        clean = measure.paired_drop(reference, candidate, "clean")
        ok = clean["drop"] <= self.s.max_clean_drop + 1e-12
        if self.s.metric == "robust":
            ok = ok and robust["drop"] <= self.s.max_robust_drop + 1e-12
        return {"verify": candidate, "holds": ok, "robust_drop": robust, "clean_drop": clean}


def run_tune(loaded: LoadedModel, out: str | Path, calib: Dataset, data: Dataset, settings: TuneOptions,
             log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Tune `loaded` for `settings.target`; writes OUT/best/, frontier.json, frontier.png and report.md."""
    _check_inputs(loaded, calib, data, settings)
    out = Path(out)
    tune = _Tune(loaded, out, calib, data, settings, log)
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
    document = _document(settings, layers, points, checked, uniform_checks, contenders, pick, final_reference, tune)
    document["final_points"] = _final_points(settings, skip)
    document["search_pick"] = {"plan": list(searched.plan), "predicted_latency_ms": searched.latency,
                               "predicted_margin_loss": searched.loss}
    document["cost_model"] = {"fp32_latency_ms": model.fp32_latency, "latency_ms": list(model.latency),
                              "margin_loss": list(model.loss)}
    document["time_budget"] = {"seconds": settings.time_budget_s, "stopped_in": tune.stopped}
    _write_outputs(out, document, pick)
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


def _sensitivities(tune: _Tune, fp32: Bundle, layers: list, sample: Dataset) -> list[dict[str, float]]:
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


def _bisect(tune: _Tune, points: list, layers: list, reference: dict[str, Any]):
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


def _final_pick(tune: _Tune, order: list, final_reference: dict[str, Any], skip: int):
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


def _document(settings, layers, points, checked, uniform_checks, contenders, pick, final_reference, tune) -> dict:
    def entry(name: str, c: dict, plan: Plan | None) -> dict:
        v = c["verify"]
        row = {"name": name, "bundle": c["bundle"].path.name, "latency_ms": c.get("latency_ms"),
               "robust_accuracy": v["robust_accuracy"], "robust_ci95": v["robust_accuracy_ci95"],
               "clean_accuracy": v["clean_accuracy"], "robust_drop": c["robust_drop"], "clean_drop": c["clean_drop"],
               "holds": c["holds"], "uniform": name.startswith("uniform"), "flags": v["flags"]}
        if plan is not None:
            row["plan"] = dict(zip([layer.name for layer in layers], plan))
        if "final" in c:
            row["final"] = {k: c["final"][k] for k in ("holds", "robust_drop", "clean_drop")} | {
                "robust_accuracy": c["final"]["verify"]["robust_accuracy"],
                "clean_accuracy": c["final"]["verify"]["clean_accuracy"]}
        return row

    rows = [entry(config.name, c, None) for config, c in uniform_checks.items()]
    rows += [entry(describe(layers, plan), c, plan) for plan, c in checked.items()]
    return {
        "schema": SCHEMA, "schema_version": 1,
        "settings": {k: v for k, v in asdict(settings).items()
                     if k not in ("threat", "threads", "bench_seconds", "time_budget_s", "pins", "gdws_budgets")}
        | {"threat": {"norm": settings.threat.norm, "eps": settings.threat.eps},
           "pins": dict(settings.pins)} | ({"gdws_budgets": list(settings.gdws_budgets)} if settings.with_gdws else {}),
        "layers": [asdict(layer) for layer in layers],
        "predicted_frontier": [{"plan": describe(layers, p.plan), "latency_ms": p.latency, "margin_loss": p.loss}
                               for p in points],
        "measured": rows,
        "final_reference": {"robust_accuracy": final_reference["robust_accuracy"],
                            "clean_accuracy": final_reference["clean_accuracy"], "n": settings.final_n},
        "acceptance": f"paired drop against the FP32 bundle on the same {settings.final_n} points, standard suite: "
                      f"point estimate within the budget (its 95% interval reported)",
        "pick": None if pick is None else pick[0],
        "cache": {"hits": tune.cache.hits, "misses": tune.cache.misses, "rejected_files": tune.cache.rejected,
                  "recomputed_bundles": tune.recomputed_bundles},
    }


def _write_outputs(out: Path, document: dict, pick) -> None:
    write_file_atomic(out / "frontier.json", json.dumps(document, indent=1, sort_keys=True))
    tune_frontier_plot(document["measured"], out / "frontier.png", document["settings"])
    write_file_atomic(out / "report.md", report(document))
    if pick is not None:   # best/ swapped in whole by the bundle store: the old or the new pick, never half
        source = pick[1]["bundle"]
        files = {p.name: p.read_bytes() for p in sorted(source.path.iterdir())
                 if p.is_file() and not p.is_symlink() and p.name != "manifest.json"}
        files["tune.json"] = json.dumps({"pick": document["pick"], "settings": document["settings"],
                                         "measured": [r for r in document["measured"]
                                                      if r["name"] == document["pick"]]}, indent=1).encode()
        manifest = {k: v for k, v in source.manifest.document.items() if k != "files"}
        write_bundle(out / "best", files, manifest)


def report(document: dict) -> str:
    s = document["settings"]
    lines = [f"# Tune: {s['target']}, batch {s['batch']}, objective {s['objective']}, metric {s['metric']}", "",
             f"Budget: robust drop <= {100 * s['max_robust_drop']:g} pt, clean drop <= {100 * s['max_clean_drop']:g} pt "
             f"(L-{'inf' if s['threat']['norm'] == 'linf' else '2'} eps {s['threat']['eps']:.4g}).", "",
             *([f"Pinned layers: {', '.join(f'{k}={v}' for k, v in s['pins'].items())}.", ""] if s.get("pins") else []),
             *([f"Time budget of {document['time_budget']['seconds']:g} s spent: the run stopped early in "
                f"{', '.join(document['time_budget']['stopped_in'])} (a rerun with more time continues from the cache).", ""]
               if document.get("time_budget", {}).get("stopped_in") else []),
             f"**Pick: {document['pick'] or 'none: no plan met the budget'}**", "",
             "| configuration | latency (ms) | robust (quick) | 95% CI | clean | robust drop | holds | final (standard) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(document["measured"], key=lambda r: (r["latency_ms"] is None, r["latency_ms"] or 0)):
        final = r.get("final")
        shown = "-" if not final else (f"{100 * final['robust_accuracy']:.1f}% (drop {100 * final['robust_drop']['drop']:+.1f} pt, "
                                       f"95% CI {100 * final['robust_drop']['ci95'][0]:+.1f}..{100 * final['robust_drop']['ci95'][1]:+.1f}); "
                                       f"{'accepted' if final['holds'] else 'rejected'}")
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}"
        lines.append(f"| {r['name']} | {latency} | {100 * r['robust_accuracy']:.1f}% | "
                     f"{100 * r['robust_ci95'][0]:.1f}-{100 * r['robust_ci95'][1]:.1f} | {100 * r['clean_accuracy']:.1f}% | "
                     f"{100 * r['robust_drop']['drop']:+.1f} pt | {'yes' if r['holds'] else 'no'} | {shown} |")
    lines += ["", document["acceptance"] + ".", "", "![frontier](frontier.png)", ""]
    return "\n".join(lines)
