"""The whole pipeline on an embedded default: train on scikit-learn digits, export, evaluate, benchmark, verify.

Besides the four precisions it builds a GDWS variant (half the MACs of the rewritable
convolutions) at FP32 and INT8, so the frontier plot shows what the rewrite buys.

With `model`/`data` it runs the same pipeline on the user's own model and dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deploy_robust import pipeline, zoo
from deploy_robust.bench import run_bench, write_bench_json
from deploy_robust.bench.plots import frontier_plot
from deploy_robust.bundle import open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.export import ExportOptions
from deploy_robust.ingest import LoadedModel, SpecOverrides, load_model
from deploy_robust.runtimes import create_runner
from deploy_robust.seeding import seed_everything
from deploy_robust.train import train_classifier
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
from deploy_robust.verify import ThreatModel
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.report import write as write_verify

DEFAULT_ARCH = "digits_cnn"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
GDWS_PRECISIONS = ("fp32", "int8")
GDWS_BUDGET = 0.5  # keep half the MACs of the rewritable convolutions


@dataclass
class DemoResult:
    dataset: str
    n: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    out: str = ""
    frontier: str = ""
    verify_eps: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n": self.n, "results": self.rows, "seconds": self.timings, "out": self.out,
                "frontier": self.frontier, "verify_eps": self.verify_eps}


def run_demo(out: str | Path = "demo-out", *, model: str | None = None, arch: str | None = None,
             data: str | None = None, overrides: SpecOverrides | None = None, trust_pickle: bool = False,
             trust_code: bool = False,
             calib: str | None = None, epochs: int = 40, seed: int = 0, bench_seconds: float = 1.0,
             verify_eps: float | None = 0.1, verify_n: int = 200, log=print) -> DemoResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if model is None:
        if data not in (None, "digits"):
            raise UserError("--data needs --model: the embedded default trains on scikit-learn digits")
        start = time.perf_counter()
        model = str(_train_default(out, epochs, seed, log))
        arch, data = DEFAULT_ARCH, "digits:test"
        timings["train"] = time.perf_counter() - start
    elif data is None:
        raise UserError("--model needs --data (the test set to evaluate on)")
    calib_source = "digits:train" if data == "digits:test" else (calib or data)

    loaded = load_model(model, arch, trust_pickle=trust_pickle, trust_code=trust_code, overrides=overrides)
    dataset = load_dataset(data, loaded.spec.shape)
    log(f"model {loaded.source['file']} ({loaded.source['arch'] or loaded.source['format']}); "
        f"data {dataset.name}: {len(dataset)} images")
    reference = evaluate(create_runner("torch", module=loaded.reference()), dataset)
    result = DemoResult(dataset.name, len(dataset), out=str(out))
    result.rows.append({"name": "reference", "backend": "torch", **reference.to_json()})
    calibration = load_dataset(calib_source, loaded.spec.shape, split="train")
    variants = [(precision, loaded, precision) for precision in PRECISIONS]
    gdws = _gdws_variant(loaded, log)
    if gdws is not None:
        variants += [(f"gdws-{precision}", gdws, precision) for precision in GDWS_PRECISIONS]
    for name, source, precision in variants:
        result.rows.append(_export_variant(name, source, precision, out, seed, calibration, dataset, reference,
                                           timings, log))
    bundles = [open_bundle(r["bundle"]) for r in result.rows if "bundle" in r]
    start = time.perf_counter()
    documents = run_bench(bundles, ["ort-cpu"], [1, 32], duration=bench_seconds, rounds=2)
    timings["bench"] = time.perf_counter() - start
    for bundle, document, row in zip(bundles, documents, (r for r in result.rows if "bundle" in r)):
        write_bench_json(bundle, document)
        row["throughput"] = {str(e["batch"]): e["throughput"] for e in document["results"]}
    points = [{"name": Path(r["bundle"]).name, "throughput": r["throughput"]["32"], "clean_accuracy": r["accuracy"]}
              for r in result.rows if "bundle" in r]
    if verify_eps:
        start = time.perf_counter()
        _verify_bundles(bundles, [r for r in result.rows if "bundle" in r], points, dataset,
                        ThreatModel("linf", verify_eps), verify_n, loaded, seed)
        timings["verify"] = time.perf_counter() - start
        result.verify_eps = verify_eps
    result.frontier = str(frontier_plot(points, out / "frontier.png", 32))
    log(f"benchmarked the bundles; frontier plot: {result.frontier}")
    result.timings = timings
    return result


def _export_variant(name: str, source: LoadedModel, precision: str, out: Path, seed: int, calibration, dataset,
                    reference, timings: dict[str, float], log) -> dict[str, Any]:
    """Export one variant, score its engine against the reference; its row of the demo's table."""
    start = time.perf_counter()
    bundle = pipeline.export_checked(source, out / name, ExportOptions(precision, seed=seed), calibration)
    timings[f"export_{name}"] = time.perf_counter() - start
    engine = evaluate(create_runner("ort-cpu", bundle), dataset)
    log(f"exported {bundle.path}/ ({name})")
    return {"name": f"{name} bundle", "backend": "ort-cpu", "bundle": str(bundle.path),
            "model_bytes": bundle.model_path.stat().st_size, **engine.to_json(),
            "agreement": compare_logits(engine.logits, reference.logits).to_json()}


def _verify_bundles(bundles, rows: list[dict], points: list[dict], dataset, threat: ThreatModel, n: int,
                    loaded: LoadedModel, seed: int) -> None:
    """The quick suite on each bundle (verify.json written), its robust accuracy added to its row and frontier point."""
    for bundle, row in zip(bundles, rows):
        doc = pipeline.verify_engine(bundle, dataset, threat, VerifyOptions(n=n, suite="quick", sweep=None, seed=seed),
                         reference=loaded.reference())
        write_verify(bundle, doc)
        row["robust_accuracy"] = doc["robust_accuracy"]
        row["flags"] = [f["flag"] for f in doc["flags"]]
        for point in points:
            if point["name"] == bundle.path.name:
                point["robust_accuracy"] = doc["robust_accuracy"]


def _gdws_variant(loaded: LoadedModel, log) -> LoadedModel | None:
    """The model with its convolutions rewritten as GDWS (plain Frobenius error), or None where none can be."""
    try:
        rewritten, plan = rewrite_model(loaded, GDWSRequest(budget=GDWS_BUDGET))
    except UserError as e:
        log(f"no GDWS variant: {e}")
        return None
    ratio = plan.to_json()["rewritable_macs"]["ratio"]
    log(f"GDWS variant: {len(plan.replaced)} convolution(s) rewritten, {ratio:.2f}x fewer MACs in them")
    return rewritten


def _train_default(out: Path, epochs: int, seed: int, log) -> Path:
    train = load_dataset("digits:train")
    seed_everything(seed)  # the initial weights too: same seed, same model
    model = zoo.get(DEFAULT_ARCH).build()
    log(f"training {DEFAULT_ARCH} on scikit-learn digits ({len(train)} images, {epochs} epochs)...")
    losses = train_classifier(model, train, epochs=epochs, seed=seed)
    path = out / f"{DEFAULT_ARCH}.pt"
    torch.save(model.state_dict(), path)
    log(f"trained: final loss {losses[-1]:.4f}; weights in {path}")
    return path
