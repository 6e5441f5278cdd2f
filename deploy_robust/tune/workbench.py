"""A tune's workbench: the uniform configurations, and the bundles, verifications and latencies a tune needs,
each exported or measured once and kept in the run's signed cache (OUT/cache) by content key."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx

from deploy_robust import pipeline
from deploy_robust.bundle import Bundle, open_bundle
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.progress import OutOfTime, check_deadline
from deploy_robust.runtimes import create_runner
from deploy_robust.private_files import check_folder, check_folders_below, read_private, sha256_of, write_private
from deploy_robust.export import CalibrationOptions, ExportOptions
from deploy_robust.ingest import LoadedModel
from deploy_robust.targets import get_target
from deploy_robust.tune import measure
from deploy_robust.tune.sensitivity import LOWERING_VERSION, InMemoryLowering
from deploy_robust.transforms.gdws.alphas import AlphaSettings
from deploy_robust.transforms.gdws.network import chosen_layers
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, apply_plan, rewrite_model
from deploy_robust.tune.space import (
    GDWS_PRECISIONS,
    UNIFORM,
    Layer,
    Plan,
    gdws_choices,
    parse_option,
    pinned_plan_file,
    plan_file,
)
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.tune.options import TuneOptions


@dataclass(frozen=True)
class Config:
    """A configuration the searched plans are compared with: one precision for every layer but the pinned
    ones, on the model itself or on its GDWS rewrite keeping `gdws` of the rewritable MACs."""

    precision: str
    gdws: float | None = None

    @property
    def name(self) -> str:
        return f"uniform {self.precision}" if self.gdws is None else f"uniform gdws{self.gdws:g} {self.precision}"


class Workbench:
    """Everything one tune run shares: its bundles, its signed cache of measurements, its time budget."""

    def __init__(
        self,
        loaded: LoadedModel,
        out: Path,
        calib: Dataset,
        data: Dataset,
        settings: TuneOptions,
        log: Callable[[str], None],
        cache: Path | None = None,
    ) -> None:
        self.loaded, self.out, self.calib, self.data, self.s, self.log = loaded, out, calib, data, settings, log
        target = get_target(settings.target)
        self.precisions, self.export_target, self.backend = target.precisions, target.profile, target.backend
        self.deadline = None if settings.time_budget_s is None else time.monotonic() + settings.time_budget_s
        self.stopped: list[str] = []  # where the time budget cut the run short
        self.float_export_s = 0.0  # how long the FP32 export took here (set by the first one)
        self._gdws: dict[float, LoadedModel] = {}  # budget -> the uniform rewrite
        self._gdws_layers: dict[float, dict[str, dict[str, Any]]] = {}  # budget -> its rewritten layers' decisions
        self._plan_models: dict[str, LoadedModel] = {}  # per-layer GDWS choices -> the model rewritten so
        self._lowering: InMemoryLowering | None = None  # made on first use
        self.grids: dict[str, Bundle] = {}  # uniform bundles whose weights the in-memory lowering reuses
        # every cache folder a real folder of this user's, never a link (a planted one is refused in one line)
        # (a shared `cache` serves every tune of the same model, target, data and seed: another objective, budget
        # or batch reuses each bundle and measurement; one tune at a time holds it, see `held`)
        check_folder(out)
        self.cache_dir = check_folders_below(out, "cache") if cache is None else check_folder(cache)
        check_folders_below(self.cache_dir, "bundles")
        self.plans = check_folders_below(self.cache_dir, "plans")
        identity = json.dumps(
            {
                "model": loaded.source.get("sha256") or loaded.source.get("file"),
                "target": settings.target,
                "calib": [calib.name, len(calib)],
                "data": [data.name, len(data)],
                "seed": settings.seed,
            },
            sort_keys=True,
        )
        recorded = self.cache_dir / "identity.json"
        if os.path.lexists(recorded) and read_private(recorded) != identity.encode():
            raise UserError(
                f"{self.cache_dir} holds a tune of another model, target, data or seed; give a new "
                + ("-o" if cache is None else "--cache")
            )  # never reuse it
        write_private(recorded, identity)
        self.cache = measure.Cache(self.cache_dir / "measurements.json")
        self.recomputed_bundles = 0
        # what a sensitivity depends on besides the bundle itself (a new budget or batch reuses them all)
        key = {
            "calib": [calib.name, len(calib)],
            "n": settings.sensitivity_n,
            "seed": settings.seed,
            "threat": [settings.threat.norm, settings.threat.eps],
        }
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The cache for this tune alone while it runs: a second tune on the same cache is refused in one line,
        since two writers of measurements.json would each lose the other's entries."""
        fd = os.open(self.cache_dir / "lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"{self.cache_dir} is in use by another tune; wait for it to end or give another --cache"
                ) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def out_of_time(self, stage: str) -> bool:
        """Whether the time budget is spent; the first time a stage finds it so, that is recorded."""
        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        self.stopped_in(stage)
        return True

    def stopped_in(self, stage: str) -> None:
        """Record that the time budget cut `stage` short (once per stage, in order)."""
        if stage not in self.stopped:
            self.stopped.append(stage)

    def bundle(
        self,
        name: str,
        precision: str,
        plan: Plan | None = None,
        layers=None,
        *,
        plan_text: str | None = None,
        loaded: LoadedModel | None = None,
        budgeted: bool = True,
    ) -> Bundle:
        """The cached bundle `name`, exported on first use (a plan as a tuple over `layers`, or as `--plan` text);
        `budgeted=False` exports it even past the time budget (the FP32 reference, the last resort)."""
        reused = self._reuse(name)
        if reused is not None:
            return reused
        path, record = self.cache_dir / "bundles" / name, f"bundle/{name}"
        if plan is not None:
            plan_text = plan_file(layers, plan)
        plan_path = None
        if plan_text is not None:
            plan_path = write_private(self.plans / f"{name}.json", plan_text)
        # past the time budget no new export starts (a cached bundle above is still reused), nor one whose first
        # part, the float graph's export from torch (which cannot stop midway), would not fit in what is left
        check_deadline()
        if budgeted and self.deadline is not None and time.monotonic() + self.float_export_s > self.deadline:
            raise OutOfTime()
        started = time.monotonic()
        bundle = pipeline.export_checked(
            loaded or self.loaded,
            path,
            ExportOptions(
                "mixed" if plan_path else precision,
                self.export_target,
                plan_file=plan_path,
                seed=self.s.seed,
                calibration=CalibrationOptions(n=256),
            ),
            None if precision in ("fp32", "fp16") else self.calib,
        )
        self.cache.put(record, sha256_of(path / "manifest.json"))
        if precision == "fp32" and plan_text is None and loaded is None:
            self.float_export_s = time.monotonic() - started  # the float export: what every export starts with
        return bundle

    def _reuse(self, name: str) -> Bundle | None:
        """The cached bundle `name` where its manifest is the one this user's tune exported here (signed in the
        cache); a bundle swapped in with a manifest of its own is removed, to be exported again, never measured
        or shipped."""
        path = self.cache_dir / "bundles" / name
        if not os.path.lexists(path):
            return None
        if self.cache.values.get(f"bundle/{name}") == sha256_of(path / "manifest.json") and not path.is_symlink():
            self.cache.hits += 1
            return open_bundle(path)
        self.recomputed_bundles += 1
        self.log(f"tune: cached bundle {name} is not the one this tune exported; exporting it again")
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
        return None

    def configs(self) -> list[Config]:
        """The uniform configurations of this tune (under pins: every layer but the pinned ones)."""
        space = self.s.precision_space()
        chosen = [Config(p) for p in UNIFORM if p == "fp32" or space is None or p in space]
        if self.s.with_gdws:
            chosen += [
                Config(p, b)
                for b in self.s.gdws_budgets
                for p in GDWS_PRECISIONS
                if p == "fp32" or (p in self.precisions and (space is None or p in space))
            ]
        # under pins, a configuration is exported as a plan, so its precision must be one the target runs per layer
        return [c for c in chosen if not self.s.pins or c.precision in self.precisions]

    def config_bundle(self, config: Config) -> Bundle:
        pins = self.s.pins
        planned = any(p != config.precision for _, p in pins)
        name = config.precision if config.gdws is None else f"gdws{config.gdws:g}-{config.precision}"
        if planned:
            name += "-pins-" + hashlib.sha256(json.dumps(pins).encode()).hexdigest()[:8]
        reused = self._reuse(name)
        if reused is not None:  # the GDWS rewrite a config needs is only made to export it
            return reused
        loaded = None if config.gdws is None else self.gdws_model(config.gdws)
        return self.bundle(
            name,
            config.precision,
            plan_text=pinned_plan_file(config.precision, pins) if planned else None,
            loaded=loaded,
        )

    def gdws_model(self, budget: float) -> LoadedModel:
        """The model with its convolutions GDWS-rewritten to keep `budget` of their MACs (robustness-aware
        channel weights from PGD points of the calibration images; pinned layers are left as they are)."""
        if budget not in self._gdws:
            settings = AlphaSettings(self.s.threat.eps, self.s.threat.norm, 10, 128, self.s.seed)
            skip = tuple(name for name, _ in self.s.pins)
            alphas, record = self._alpha_file(settings, skip)
            request = GDWSRequest(
                budget=budget, alphas=alphas, alpha_data=self.calib, alpha_settings=settings, skip=skip
            )
            self._gdws[budget] = rewrite_model(self.loaded, request, self.log)[0]
            digest = sha256_of(alphas)
            if self.cache.values.get(record) != digest:  # a fresh estimate (also one replacing a removed file)
                self.cache.put(record, digest)
        return self._gdws[budget]

    def _alpha_file(self, settings: AlphaSettings, skip: tuple[str, ...]) -> tuple[Path, str]:
        """Where the GDWS channel weights live (they do not depend on the budget, so every budget reads the one
        estimate: about 6 minutes of a CIFAR ResNet-18 here), and its record in the signed cache. A file whose
        sha256 is not the one this user's tune recorded is removed, to be estimated again, never read."""
        described = [asdict(settings), self.calib.name, len(self.calib), sorted(skip)]
        key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
        path, record = self.cache_dir / f"gdws-alphas-{key}.json", f"gdws-alphas/{key}"
        if os.path.lexists(path) and (path.is_symlink() or self.cache.values.get(record) != sha256_of(path)):
            path.unlink()
        return path, record

    def gdws_layers(self, budget: float) -> dict[str, dict[str, Any]]:
        """Layer -> its GDWS decision (allocation, MACs before and after), for each layer the uniform rewrite at
        `budget` rewrites: read back from its FP32 bundle's manifest, so a rerun from the cache estimates nothing."""
        if budget not in self._gdws_layers:  # asked once per measured layer: the bundle is opened once
            doc = self.config_bundle(Config("fp32", budget)).manifest.transforms["gdws"]
            self._gdws_layers[budget] = {layer["name"]: layer for layer in doc["layers"] if layer["replaced"]}
        return self._gdws_layers[budget]

    def plan_model(self, layers: list[Layer], plan: Plan) -> LoadedModel | None:
        """The model a plan exports from: with its per-layer GDWS choices rewritten (each layer as the uniform
        rewrite at its budget rewrites it), or None where it makes none (the model itself)."""
        chosen = gdws_choices(layers, plan)
        if not chosen:
            return None
        key = json.dumps(sorted(chosen.items()))
        if key not in self._plan_models:
            allocations = {name: self.gdws_layers(budget)[name]["allocation"] for name, budget in chosen.items()}
            rewrite = chosen_layers(self.loaded.module, self.loaded.spec.shape, allocations)
            self._plan_models[key] = apply_plan(self.loaded, rewrite)
        return self._plan_models[key]

    def verified(self, bundle: Bundle, suite: str, n: int, skip: int = 0) -> dict[str, Any]:
        """verify's figures on test points skip..skip+n (cached by the bundle's content and the settings)."""
        return self._verified(bundle, suite, self.data.skip(skip) if skip else self.data.take(n), n, f"{skip}+{n}")

    def verified_at(self, bundle: Bundle, suite: str, indices: np.ndarray) -> dict[str, Any]:
        """verify's figures on the test points at `indices`, in that order (cached as `verified`, by the points)."""
        points = hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()[:16]
        return self._verified(bundle, suite, self.data.subset(indices), len(indices), f"at-{points}")

    def final_reference(self, fp32: Bundle, candidate: dict[str, Any], skip: int, everywhere: bool) -> dict[str, Any]:
        """FP32's standard-suite outcomes on the candidate's final points (test points from `skip`), attacked where
        the paired drop needs them (`measure.reference_outcomes`); verify's runs cached by their points."""
        n = len(candidate["per_example"]["robust"])
        whole = self._verify_key(fp32, "standard", f"{skip}+{n}")
        if whole in self.cache.values:  # FP32 already verified on every one of these points (its own final check,
            # an earlier tune on a shared cache): the exact pairing, read, nothing attacked again
            doc = self.cache.get(whole, lambda: None)
            fields = ("robust_accuracy", "clean_accuracy", "per_example", "flags")
            return {k: doc[k] for k in fields} | {"attacked": "every point"}
        return measure.reference_outcomes(
            candidate, lambda points: self.verified_at(fp32, "standard", points + skip), everywhere
        )

    def _verified(self, bundle: Bundle, suite: str, data: Dataset, n: int, points: str) -> dict[str, Any]:
        def compute():
            doc = pipeline.verify_engine(  # with the plan the model kind needs, e.g. an ensemble's majorities
                bundle,
                data,
                self.s.threat,
                VerifyOptions(
                    n=n,
                    suite=suite,
                    backend=self.backend,
                    sweep=None,
                    seed=self.s.seed,
                    resume=True,
                    layout="contiguous",
                ),
            )
            return {
                k: doc[k]
                for k in (
                    "robust_accuracy",
                    "robust_accuracy_ci95",
                    "clean_accuracy",
                    "clean_accuracy_ci95",
                    "per_example",
                )
            } | {"flags": [f["flag"] for f in doc["flags"]]}

        return self._cached(self._verify_key(bundle, suite, points), compute)

    def _verify_key(self, bundle: Bundle, suite: str, points: str) -> str:
        return (
            f"verify/{bundle.manifest.model.sha256}/{suite}/{points}/{self.s.threat.norm}/"
            f"{self.s.threat.eps}/{self.s.seed}/{self.backend}"
        )

    def quick_parts(self) -> list[tuple[int, int]]:
        """(first point, points) of each part of the candidates' n test points a quick check looks after."""
        size = -(-self.s.n // measure.QUICK_LOOKS)
        return [(skip, min(size, self.s.n - skip)) for skip in range(0, self.s.n, size)]

    def quick_verified(self, bundle: Bundle, looks: int = measure.QUICK_LOOKS) -> dict[str, Any]:
        """The quick suite's figures on the first `looks` parts of the candidates' n points."""
        parts = self.quick_parts()[:looks]
        return measure.merged_figures([self.verified(bundle, "quick", n, skip) for skip, n in parts])

    def quick_check(self, bundle: Bundle, fp32: Bundle) -> dict[str, Any]:
        """`assess` of the candidate against FP32 on the quick suite, paired, looking after each part of the points
        and stopping once the drops are clearly inside or outside the budget (`measure.early_verdict`)."""
        budgets = {"clean": self.s.max_clean_drop} | (
            {"robust": self.s.max_robust_drop} if self.s.metric == "robust" else {}
        )
        parts = len(self.quick_parts())
        for looks in range(1, parts + 1):
            reference, candidate = self.quick_verified(fp32, looks), self.quick_verified(bundle, looks)
            result = self.assess(reference, candidate)
            verdict = measure.early_verdict(reference, candidate, budgets) if looks < parts else None
            if verdict is not None:
                result["holds"] = verdict
                break
        result["points_checked"] = len(candidate["per_example"]["robust"])
        return result

    def latencies(self, bundles: list[Bundle], tag: str) -> list[float]:
        key = f"latency/{tag}/" + ",".join(b.manifest.model.sha256[:12] for b in bundles)
        return self._cached(
            f"{key}/{self.backend}/{self.s.batch}/{self.s.objective}",
            lambda: measure.latencies(
                bundles,
                self.backend,
                self.s.batch,
                self.s.objective,
                duration=self.s.bench_seconds,
                threads=self.s.threads,
            ),
        )

    def layer_times(self, bundle: Bundle, names: dict[str, tuple[str, ...]]) -> dict[str, float] | None:
        """Per FP32-graph node (`names`: node -> the names a profile may give it, `measure.node_names`), its ms in
        the target runtime's own per-layer profile at the tune's batch (None where the runtime's layer names do
        not lead back to the nodes: `measure.layer_times`)."""

        def compute():
            runner = create_runner(self.backend, bundle, threads=self.s.threads)
            rows = runner.layer_profile(np.zeros((self.s.batch, *bundle.spec.shape), np.float32))
            return measure.layer_times(rows, names)

        return self._cached(f"layer-times/{bundle.manifest.model.sha256}/{self.backend}/{self.s.batch}", compute)

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """The cache's value for `key`, or `compute()`'s, which past the time budget does not start."""

        def within_budget() -> Any:
            check_deadline()
            return compute()

        return self.cache.get(key, within_budget)

    def margins(self, bundle: Bundle, sample: Dataset, metric: str) -> list[float]:
        """Per point of `sample`, the attacked (`metric` "robust") or clean margin of an exported bundle's twin."""
        return self._cached(
            f"margins/{bundle.manifest.model.sha256}/{metric}/{self.key}",
            lambda: measure.twin_margins(bundle, sample, self.s.threat, metric, self.s.seed),
        )

    def lowerable(self, fp32: Bundle, layer: str) -> bool:
        """Whether `layer`'s sensitivity is measured in memory (a Conv2d or Linear of the torch model)."""
        return self.s.sensitivities == "in-memory" and self.lowering(fp32).lowerable(layer)

    def lowered_margins(
        self, fp32: Bundle, layer: str | None, option: str, sample: Dataset, metrics: tuple[str, ...]
    ) -> dict[str, list[float]]:
        """Per metric of `metrics` and per point of `sample`, the attacked ("robust") or clean margin of the torch
        model with only `layer` at plan entry `option` (a precision, or a GDWS rewrite at a precision; layer None:
        the model itself), lowered in memory once for the metrics not cached yet; keyed by the FP32 graph's hash,
        the layer, the lowering's grid (for a rewrite, its allocation) and the metric."""
        lowering = self.lowering(fp32)
        budget, precision = parse_option(option)
        allocation = None if budget is None else self.gdws_layers(budget)[layer]["allocation"]
        if allocation is not None:
            weights = "gdws-" + hashlib.sha256(json.dumps(allocation).encode()).hexdigest()[:12]
        else:
            weights = "fp32" if layer is None else lowering.grid(layer, precision)
        grid = f"{lowering.profile.name}/{lowering.profile.int8_weight_levels}/{weights}/{LOWERING_VERSION}"
        prefix = f"lowered-margins/{fp32.manifest.model.sha256}/{layer}/{option}/{grid}"

        def measured(missing: list[str]) -> dict[str, list[float]]:
            check_deadline()  # nothing new starts past the time budget
            return lowering.margins_each(
                layer, precision, sample, self.s.threat, tuple(missing), self.s.seed, gdws_allocation=allocation
            )

        return self.cache.get_each({m: f"{prefix}/{m}/{self.key}" for m in metrics}, measured)

    def lowering(self, fp32: Bundle) -> InMemoryLowering:
        """The model's in-memory lowering (made on first use, from the FP32 reference bundle's graph and the
        uniform bundles given to `use_uniform_grids`)."""
        if self._lowering is None:
            graph = onnx.load(str(fp32.model_path))
            uniform = {p: (b.manifest.model.sha256[:12], onnx.load(str(b.model_path))) for p, b in self.grids.items()}
            self._lowering = InMemoryLowering(self.loaded, graph, self.export_target, self.calib, uniform=uniform)
        return self._lowering

    def use_uniform_grids(self, bundles: dict[str, Bundle]) -> None:
        """Lower layers in memory with these uniform bundles' weights and input quantizers (precision -> bundle)."""
        self.grids = {p: b for p, b in bundles.items() if p in ("int8", "int4")}
        self._lowering = None

    def assess(self, reference: dict, candidate: dict) -> dict[str, Any]:
        """The candidate's verify figures and paired drops against the reference, and whether it holds the budget."""
        robust = measure.paired_drop(reference, candidate, "robust")
        clean = measure.paired_drop(reference, candidate, "clean")
        ok = clean["drop"] <= self.s.max_clean_drop + 1e-12
        if self.s.metric == "robust":
            ok = ok and robust["drop"] <= self.s.max_robust_drop + 1e-12
        return {"verify": candidate, "holds": ok, "robust_drop": robust, "clean_drop": clean}
