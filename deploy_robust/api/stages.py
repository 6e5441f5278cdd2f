"""export, eval, verify and tune: the stages of a bundle's life, as library calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy_robust import gates, pipeline, process_group
from deploy_robust.bundle import Bundle, is_bundle, open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.evaluate import compare_logits, evaluate as evaluate_runner
from deploy_robust.export import ExportOptions, onnx_summary
from deploy_robust.api.common import ModelOptions, Result
from deploy_robust.pipeline import Transforms, VerifyGates
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.run import run_tune
from deploy_robust.verify import ThreatModel, VerifyOptions, parse_eps
from deploy_robust.verify.report import write as write_report


@dataclass(frozen=True)
class ExportRequest:
    model: str | Path
    out: str | Path
    options: ExportOptions = ExportOptions()  # precision, target, calibration, rounding, seed... (checked there)
    calib: str | Path | None = None  # calibration images (the training split where the source has one)
    static_batch: int | None = None
    transforms: Transforms = Transforms()  # GDWS rewrite, then SAP or feature squeezing
    model_options: ModelOptions = ModelOptions()


def export(request: ExportRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """A model file -> a bundle: GDWS rewrite, then a defense (SAP or squeezing), then the precision export."""
    loaded = request.model_options.load(request.model)
    if request.static_batch:
        loaded.fixed_batch = request.static_batch
    calib = None
    if request.calib is not None:
        try:  # a training split where the source has one
            calib = load_dataset(request.calib, loaded.spec.shape, split="train")
        except UserError as e:
            raise UserError(f"--calib: {e}") from None
    loaded, plan = pipeline.prepare(loaded, request.transforms, request.options, calib, log)
    bundle = pipeline.export_checked(loaded, request.out, request.options, calib)
    doc = {"bundle": str(bundle.path), "manifest": bundle.manifest.to_json(), "graph": onnx_summary(bundle.model_path)}
    return Result(doc, bundle=bundle, gdws_plan=plan)


@dataclass(frozen=True)
class EvalRequest:
    target: str | Path  # a bundle directory or a model file
    data: str | Path
    split: str = "test"
    backend: str | None = None  # default: ort-cpu for a bundle, torch for a model file
    n: int | None = None
    batch_size: int = 256
    runtime: RuntimeOptions = RuntimeOptions()
    reference: str | Path | None = None
    model: ModelOptions = ModelOptions()
    min_accuracy: float | None = None
    min_agreement: float | None = None


def evaluate(request: EvalRequest) -> Result:
    """Clean accuracy of a bundle (on a runtime) or a model file (in torch), optionally against a reference."""
    if request.min_agreement is not None and request.reference is None:
        raise UserError("--min-agreement needs --reference")
    bundle = None
    if is_bundle(Path(request.target)):
        bundle = open_bundle(request.target)
        spec, backend = bundle.spec, request.backend or "ort-cpu"
        runner = create_runner(backend, bundle, options=request.runtime)
        subject: dict[str, Any] = {
            "bundle": str(bundle.path),
            "precision": bundle.precision,
            "engine_execution": runner.execution(),
        }
    else:
        loaded = request.model.load(request.target)
        spec, backend = loaded.spec, request.backend or "torch"
        if backend.startswith("ort"):
            raise UserError(f"backend {backend} runs bundles; export the model first (deploy-robust export)")
        runner = create_runner(backend, module=loaded.reference())
        subject = {"model": loaded.source["file"]}
    dataset = load_dataset(request.data, spec.shape, split=request.split, limit=request.n)
    result = evaluate_runner(runner, dataset, request.batch_size)
    doc = subject | {"backend": backend, "dataset": dataset.name} | result.to_json()
    values = {"accuracy": result.accuracy}
    if request.reference is not None:
        if bundle is not None:
            reference = request.model.load_reference(request.reference, bundle)
        else:
            reference = request.model.load(request.reference)
        ref_result = evaluate_runner(create_runner("torch", module=reference.reference()), dataset, request.batch_size)
        agreement = compare_logits(result.logits, ref_result.logits).to_json()
        doc["reference"] = {"model": reference.source["file"], "accuracy": ref_result.accuracy, "agreement": agreement}
        values["top1_agreement"] = agreement["top1_agreement"]
    doc["gates"] = gates.evaluate_all(
        gates.minimum("accuracy", request.min_accuracy, "--min-accuracy")
        + gates.minimum("top1_agreement", request.min_agreement, "--min-agreement"),
        values,
    )
    return Result(doc)


@dataclass(frozen=True)
class VerifyRequest:
    bundle: str | Path
    data: str | Path
    eps: float | str  # on the [0, 1] scale; "8/255" accepted
    norm: str = "linf"
    options: VerifyOptions = VerifyOptions()  # suite, n, engine backend and runtime, seed, ... (checked there)
    reference: str | Path | None = None  # the float model: transfer attacks and the paired delta
    model: ModelOptions = ModelOptions()
    gates: VerifyGates = VerifyGates()  # --min-clean-acc, --min-robust-acc, --max-robust-drop, --min-agreement
    write: bool = True  # verify.json, report.md/html and the eps curve into the bundle


def verify(request: VerifyRequest) -> Result:
    """Robust accuracy of the bundle's engine under adaptive attacks, with the requested gates evaluated.

    Under a process group (torchrun, or `verify --workers N`), every rank calls this with the same request:
    each verifies its shard of the batches, every rank gets the merged result, and rank 0 alone writes the
    report. A rank that cannot load its inputs fails every rank with one line."""
    with process_group.all_or_none("loading the bundle and data"):
        bundle: Bundle = open_bundle(request.bundle)
        threat = ThreatModel(request.norm, parse_eps(request.eps))
        if request.gates.need_reference and request.reference is None:
            raise UserError("--max-robust-drop and --min-agreement need --reference")
        dataset = load_dataset(request.data, bundle.spec.shape)
        reference = None
        if request.reference is not None:
            reference = request.model.load_reference(request.reference, bundle).reference()
    doc = pipeline.verify_gated(bundle, dataset, threat, request.options, reference, request.gates)
    written = write_report(bundle, doc) if request.write and process_group.rank() == 0 else []
    return Result(doc, written)


@dataclass(frozen=True)
class TuneRequest:
    """`deploy-robust tune`'s request: the fastest bundle of `model` on `options.target` within the robustness budget."""

    model: str | Path
    out: str | Path
    calib: str | Path
    data: str | Path
    options: TuneOptions  # the threat, target, budgets, space, sample sizes, ... (checked there)
    model_options: ModelOptions = ModelOptions()
    cache: str | Path | None = None  # shared by tunes of the same model, target, data and seed (default OUT/cache)


def tune(request: TuneRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Run a tune; the document is frontier.json's. A tune that finds no plan within the budget fails its gate."""
    loaded = request.model_options.load(request.model)
    calib = load_dataset(request.calib, loaded.spec.shape, split="train")
    data = load_dataset(request.data, loaded.spec.shape)
    doc = run_tune(loaded, request.out, calib, data, request.options, log, request.cache)
    doc["gates"] = [
        {
            "name": "plan_within_budget",
            "op": ">=",
            "threshold": 1,
            "value": float(doc["pick"] is not None),
            "passed": doc["pick"] is not None,
        }
    ]
    out = Path(request.out)
    written = [out / "frontier.json", out / "frontier.png", out / "report.md"] + ([out / "best"] if doc["pick"] else [])
    return Result(doc, written, bundle=open_bundle(out / "best") if doc["pick"] else None)
