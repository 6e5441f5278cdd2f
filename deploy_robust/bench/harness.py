"""bench: measure bundles on runtimes, write bench.json, compare bundles side by side from one run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.bench.machine import machine_info
from deploy_robust.bench.measure import BatchResult, latency_stats, measure, stability_of
from deploy_robust.bundle import Bundle
from deploy_robust.bundle.manifest import dumps
from deploy_robust.errors import UserError
from deploy_robust.progress import progress
from deploy_robust.runtimes import BACKENDS, RuntimeOptions, create_runner, options_for, refuse, unsupported

SCHEMA = "deploy-robust/bench"
SCHEMA_VERSION = 1


def run_bench(bundles: list[Bundle], backends: list[str], batches: list[int], *, threads: int | None = None,
              warmup: int = 10, iters: int | None = None, duration: float = 3.0, rounds: int = 1,
              power: bool = False, options: RuntimeOptions | None = None, layers: bool = False,
              log=lambda msg: None) -> list[dict[str, Any]]:
    """One document per bundle. With several bundles (or rounds > 1) the measurements are
    interleaved round by round, so a noisy neighbour slows every bundle alike. `options` configure
    the runtimes (`threads` is shorthand); with `layers`, each backend's own profiler adds time per
    layer at the first batch size (`layers` in the document)."""
    options = options or RuntimeOptions(threads=threads)
    per_backend = _options_per_backend(backends, options)
    if not batches or min(batches) <= 0:
        raise UserError("--batch needs positive batch sizes, e.g. 1,8,32")
    sampler = _power_sampler() if power else None
    runners, loads = _load_runners(bundles, backends, per_backend)
    samples: dict[tuple[int, str, int], list[BatchResult]] = {}
    per_round = duration / rounds
    plan = [(batch, r, key) for batch in batches for r in range(rounds) for key in runners]
    for batch, r, (i, backend) in progress(plan, total=len(plan), desc="bench"):
        log(f"{bundles[i].path.name} {backend} batch {batch} (round {r + 1}/{rounds})")
        result = measure(runners[(i, backend)], bundles[i].spec.shape, batch, warmup=warmup if r == 0 else 2,
                         iters=None if iters is None else max(1, iters // rounds), duration=per_round,
                         min_iters=max(5, 20 // rounds), power_sampler=sampler)
        samples.setdefault((i, backend, batch), []).append(result)
    machine = machine_info()
    settings = {"warmup": warmup, "iters": iters, "duration_s": duration, "rounds": rounds, "threads": options.threads,
                "input_buffers": 4}
    documents = []
    for i, bundle in enumerate(bundles):
        entries, profiles = [], []
        for backend in backends:
            runner = runners[(i, backend)]
            for batch in batches:
                merged = _merge(samples[(i, backend, batch)])
                entry = merged.to_json() | loads[(i, backend)] | {"runtime": _runtime_settings(runner, options.threads)}
                entries.append(entry)
            if layers:
                profiles.append({"backend": backend, "batch": batches[0],
                                 "layers": _layer_table(runner, bundle, batches[0])})
        documents.append(_document(bundle, settings, machine, entries) | ({"layers": profiles} if layers else {}))
    for runner in runners.values():
        runner.deactivate()
    return documents


def _options_per_backend(backends: list[str], options: RuntimeOptions) -> dict[str, RuntimeOptions]:
    """Each backend gets the options it takes; an option none of them takes is refused."""
    if len(backends) > 1:
        refused = set.intersection(*(set(unsupported(b, options)) for b in backends if b in BACKENDS))
        if refused:
            raise refuse(sorted(refused)[0], backends[0])
    return {b: options_for(b, options) if len(backends) > 1 else options for b in backends}


def _load_runners(bundles: list[Bundle], backends: list[str], per_backend: dict[str, RuntimeOptions]):
    """A started runner per (bundle index, backend), and its load and first-inference times."""
    runners: dict[tuple[int, str], Any] = {}
    loads: dict[tuple[int, str], dict[str, float]] = {}
    for i, bundle in enumerate(bundles):
        for backend in backends:
            runner = create_runner(backend, bundle, options=per_backend[backend])
            start = time.perf_counter()
            runner.activate()
            load_ms = (time.perf_counter() - start) * 1e3
            x = _one_input(bundle)
            start = time.perf_counter()
            runner.infer(x)
            loads[(i, backend)] = {"load_ms": load_ms, "first_inference_ms": (time.perf_counter() - start) * 1e3}
            runners[(i, backend)] = runner
    return runners, loads


def _document(bundle: Bundle, settings: dict[str, Any], machine: dict[str, Any], entries: list) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "bundle": {"path": str(bundle.path), "precision": bundle.precision, "target": bundle.manifest.target,
                   "model_bytes": bundle.model_path.stat().st_size, "sha256": bundle.manifest.model.sha256},
        "settings": settings,
        "machine": machine,
        "results": entries,
    }


def write_bench_json(bundle: Bundle, document: dict[str, Any], figures: dict[str, bytes] | None = None) -> Path:
    """bench.json (and `figures`, e.g. latency.png) kept in this run's own folder, `runs/<time>-bench-<backends>/`,
    and copied to the bundle's top level as the latest run's. Returns the run folder."""
    files = {"bench.json": dumps(document), **(figures or {})}
    backends = "-".join(sorted({e["backend"] for e in document["results"]}))
    return bundle.write_run(f"bench-{backends}", files)


def _merge(results: list[BatchResult]) -> BatchResult:
    if len(results) == 1:
        return results[0]
    samples = [s for r in results for s in r.latencies_ms]
    first = results[0]
    stopped = sorted({r.stability["stopped_by"] for r in results if r.stability})
    stability, warnings = stability_of(samples, "+".join(stopped) or "iterations", [r.throughput for r in results])
    merged = BatchResult(first.backend, first.batch, len(samples), sum(r.seconds for r in results),
                         first.batch * len(samples) / (sum(samples) / 1e3), latency_stats(samples),
                         peak_rss_mib=max((r.peak_rss_mib or 0) for r in results) or None,
                         peak_device_mib=max((r.peak_device_mib or 0) for r in results) or None,
                         phases_ms=first.phases_ms, power=first.power, stability=stability, warnings=warnings,
                         latencies_ms=samples)  # fmt: skip
    return merged


def _one_input(bundle: Bundle) -> np.ndarray:
    return np.zeros((1, *bundle.spec.shape), np.float32)


def _runtime_settings(runner, threads: int | None) -> dict[str, Any]:
    """What ran: the runner's own account (OpenVINO: the precision it executed in) and the thread setting."""
    return {"threads": threads or "runtime default"} | runner.execution()


def _layer_table(runner, bundle: Bundle, batch: int) -> list[dict[str, Any]]:
    """Per-layer time from the runtime's profiler, slowest first, with each layer's share of the total."""
    try:
        rows = runner.layer_profile(np.zeros((batch, *bundle.spec.shape), np.float32))
    except NotImplementedError as e:
        raise UserError(f"--layers: {e}") from None
    total = sum(r["ms"] for r in rows) or 1.0
    return [r | {"share": r["ms"] / total} for r in sorted(rows, key=lambda r: -r["ms"])]


def _power_sampler():
    from deploy_robust.bench.power import TegrastatsSampler

    try:
        return TegrastatsSampler()
    except RuntimeError as e:
        raise UserError(f"--power: {e}") from None
