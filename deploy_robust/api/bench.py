"""bench: latency and throughput of bundles on runtimes, written into each bundle (bench.json, latency.png),
with the deployment frontier (throughput against verified accuracy) where asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy_robust.api.common import Result
from deploy_robust.bench import run_bench, write_bench_json
from deploy_robust.bench.plots import frontier_plot, latency_plot
from deploy_robust.bundle import Bundle, open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.evaluate import evaluate
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.verify.document import VerifySummary


@dataclass(frozen=True)
class BenchRequest:
    """The bundles to measure interleaved in one run (ratios are to the first), and how."""

    bundles: tuple[str | Path, ...]
    backends: tuple[str, ...] = ("ort-cpu",)
    batches: tuple[int, ...] = (1, 8, 32)
    runtime: RuntimeOptions = RuntimeOptions()
    warmup: int = 10
    iters: int | None = None  # timed iterations per batch; None: run for `duration` seconds
    duration: float = 3.0
    rounds: int | None = None  # interleaved rounds; None: 1, or 3 for several bundles
    power: bool = False  # sample board power with tegrastats (Jetson)
    layers: bool = False  # time per layer from each runtime's own profiler
    plot: bool = True  # latency.png into each bundle
    frontier: str | Path | None = None  # the frontier plot to write
    data: str | Path | None = None  # with `frontier`: clean accuracy where a bundle has no verify.json

    def __post_init__(self) -> None:
        if not self.bundles:
            raise UserError("bench needs a bundle (or --compare B1 B2 ...)")
        if not self.backends or not self.batches:
            raise UserError("bench needs at least one --backend and one --batch")


def bench(request: BenchRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Measure; the document holds one bench.json document per bundle (`results`) and the `ratios` to the first."""
    bundles = [open_bundle(p) for p in request.bundles]
    rounds = request.rounds or (3 if len(bundles) > 1 else 1)
    accuracies = _frontier_accuracies(bundles, request.data) if request.frontier else None  # inputs checked first
    documents = run_bench(
        bundles,
        list(request.backends),
        list(request.batches),
        options=request.runtime,
        warmup=request.warmup,
        iters=request.iters,
        duration=request.duration,
        rounds=rounds,
        power=request.power,
        layers=request.layers,
        log=log,
    )
    written = []
    for bundle, document in zip(bundles, documents):
        figures = {"latency.png": _latency_png(document)} if request.plot else {}
        run = write_bench_json(bundle, document, figures)
        written += [run / "bench.json", *(run / name for name in figures)]
    if request.frontier:
        batch, backend = max(request.batches), request.backends[0]
        points = _frontier_points(bundles, documents, accuracies, batch, backend)
        frontier_plot(points, Path(request.frontier), batch, robust_label=accuracies["label"])
        written.append(Path(request.frontier))
    return Result({"results": documents, "ratios": ratios(documents)}, written)


def _latency_png(document: dict) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return latency_plot([document], Path(tmp) / "latency.png").read_bytes()


def ratios(documents: list[dict]) -> list[dict]:
    """Throughput of every bundle against the first, per backend and batch (what --compare prints)."""
    first = {(e["backend"], e["batch"]): e["throughput"] for e in documents[0]["results"]}
    return [
        {
            "bundle": doc["bundle"]["path"],
            "backend": e["backend"],
            "batch": e["batch"],
            "throughput_vs_first": e["throughput"] / first[(e["backend"], e["batch"])],
        }
        for doc in documents
        for e in doc["results"]
        if (e["backend"], e["batch"]) in first
    ]


def _frontier_accuracies(bundles: list[Bundle], data: str | Path | None) -> dict[str, Any]:
    """Clean (and robust) accuracy per bundle for the frontier, checked before anything is measured: robust
    figures only from verify.json files made under one threat model and sample, clean ones from --data."""
    verified = {
        b.path: VerifySummary.read(b.path / "verify.json") for b in bundles if (b.path / "verify.json").is_file()
    }
    if len({v.setting for v in verified.values()}) > 1:
        described = "; ".join(f"{p.name}: {v.threat}, n={v.n}, suite {v.suite}" for p, v in verified.items())
        raise UserError(
            f"--frontier: the bundles were verified under different settings ({described}); verify them "
            "under one threat model and sample so their robust accuracies share an axis"
        )
    missing = [b for b in bundles if b.path not in verified]
    if missing and not data:
        raise UserError(f"--frontier needs accuracies: {missing[0].path} has no verify.json; pass --data")
    datasets: dict = {}
    for bundle in missing:
        if bundle.spec.shape not in datasets:
            try:
                datasets[bundle.spec.shape] = load_dataset(data, bundle.spec.shape)
            except UserError as e:
                raise UserError(f"--frontier --data for {bundle.path.name}: {e}") from None
    points: dict = {}
    for bundle in bundles:
        if bundle.path in verified:
            v = verified[bundle.path]
            points[bundle.path] = {
                "clean_accuracy": v.clean_accuracy,
                "robust_accuracy": v.robust_accuracy,
                "robust_ci95": list(v.robust_ci95),
            }
        else:
            engine = evaluate(create_runner("ort-cpu", bundle), datasets[bundle.spec.shape])
            points[bundle.path] = {"clean_accuracy": engine.accuracy}
    label = None
    if verified:
        v = next(iter(verified.values()))
        label = f"robust (verify: {v.threat}, n={v.n}, 95% CI)"
    return {"points": points, "label": label}


def _frontier_points(bundles, documents, accuracies, batch: int, backend: str) -> list[dict]:
    points = []
    for bundle, doc in zip(bundles, documents):
        throughput = next(e["throughput"] for e in doc["results"] if e["batch"] == batch and e["backend"] == backend)
        points.append({"name": bundle.path.name, "throughput": throughput} | accuracies["points"][bundle.path])
    return points
