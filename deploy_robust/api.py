"""The library API, in the shape of the commands: a request object in, a result with its gates evaluated out.

    from deploy_robust.api import ExportRequest, VerifyRequest, export, verify
    from deploy_robust.export import ExportOptions
    export(ExportRequest("model.pt", "out/int8", ExportOptions("int8"), calib="train.npz"))
    result = verify(VerifyRequest("out/int8", data="test.npz", eps="8/255", min_robust_acc=0.45))
    result.passed, result.document["robust_accuracy"], result.failure

`deploy-robust export`, `eval` and `verify` only map their arguments onto these requests and print
the result; a failing gate is `result.passed == False` here and exit code 1 there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deploy_robust import gates, process_group
from deploy_robust.bundle import Bundle, is_bundle, open_bundle
from deploy_robust.data import load_dataset
from deploy_robust.defenses.sap import apply_sap
from deploy_robust.defenses.squeeze import apply_squeezing
from deploy_robust.errors import UserError
from deploy_robust.evaluate import compare_logits, evaluate as evaluate_runner
from deploy_robust.export import ExportOptions, export_bundle, onnx_summary
from deploy_robust.ingest import SpecOverrides, load_model
from deploy_robust.ingest.kinds import attack_plan_for
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.transforms.gdws.network import GDWSPlan
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.run import run_tune
from deploy_robust.verify import ThreatModel, VerifyOptions, parse_eps, run_verify
from deploy_robust.verify.protocol import reference_robust_accuracy
from deploy_robust.verify.report import write as write_report


@dataclass(frozen=True)
class ModelOptions:
    """How to read a model file that is not a bundle (the reference, or eval's model)."""

    arch: str | None = None
    trust_pickle: bool = False
    trust_code: bool = False
    overrides: SpecOverrides | None = None

    def load(self, path: str | Path):
        return load_model(
            path, self.arch, trust_pickle=self.trust_pickle, trust_code=self.trust_code, overrides=self.overrides
        )


@dataclass
class Result:
    """A run's JSON document (with its `gates`), the files it wrote (verify), the bundle it made (export)."""

    document: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    bundle: Bundle | None = None
    gdws_plan: GDWSPlan | None = None

    @property
    def gates(self) -> list[dict[str, Any]]:
        return self.document.get("gates", [])

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.gates)

    @property
    def failure(self) -> str | None:
        return gates.failure_message(self.gates)


@dataclass(frozen=True)
class SAPOptions:
    layers: tuple[str, ...] | None = None  # module names to prune after; None: every activation module
    fraction: float = 1.0  # draws per layer as a fraction of its units, in (0, 16]
    seed: int | None = None  # seeded, repeatable masks (for tests; not a defense)


@dataclass(frozen=True)
class SqueezeOptions:
    squeezers: str  # e.g. "bits:5,median:2"
    mode: str = "squeeze"  # or "detect": a squeeze_score output with a threshold set on calib
    fpr: float = 0.05  # detect mode: false-positive rate on the clean calibration images


@dataclass(frozen=True)
class ExportRequest:
    model: str | Path
    out: str | Path
    options: ExportOptions = ExportOptions()  # precision, target, calibration, rounding, seed... (checked there)
    calib: str | Path | None = None  # calibration images (the training split where the source has one)
    static_batch: int | None = None
    gdws: GDWSRequest | None = None
    sap: SAPOptions | None = None
    squeeze: SqueezeOptions | None = None
    model_options: ModelOptions = ModelOptions()


def export(request: ExportRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """A model file -> a bundle: GDWS rewrite, then a defense (SAP or squeezing), then the precision export."""
    if request.sap is not None and request.squeeze is not None:
        raise UserError("--squeeze and --sap together are not supported; export one defense at a time")
    loaded = request.model_options.load(request.model)
    if request.static_batch:
        loaded.fixed_batch = request.static_batch
    plan = None
    if request.gdws is not None:
        loaded, plan = rewrite_model(loaded, request.gdws, log)
    if request.sap is not None:
        if not 0 < request.sap.fraction <= 16:
            raise UserError(f"--sap-fraction must be in (0, 16]; got {request.sap.fraction:g}")
        loaded = apply_sap(
            loaded, list(request.sap.layers) if request.sap.layers else None, request.sap.fraction, request.sap.seed
        )
    calib = None
    if request.calib is not None:
        try:  # a training split where the source has one
            calib = load_dataset(request.calib, loaded.spec.shape, split="train")
        except UserError as e:
            raise UserError(f"--calib: {e}") from None
    if request.squeeze is not None:
        if request.squeeze.mode == "detect" and request.options.precision != "fp32":
            raise UserError("--squeeze-mode detect exports at --precision fp32 (its score output is float)")
        loaded = apply_squeezing(loaded, request.squeeze.squeezers, request.squeeze.mode, calib, request.squeeze.fpr)
    bundle = export_bundle(loaded, request.out, request.options, calib=calib)
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
    min_clean_acc: float | None = None
    min_robust_acc: float | None = None
    max_robust_drop: float | None = None
    min_agreement: float | None = None
    write: bool = True  # verify.json, report.md/html and the eps curve into the bundle


def verify(request: VerifyRequest) -> Result:
    """Robust accuracy of the bundle's engine under adaptive attacks, with the requested gates evaluated.

    Under a process group (torchrun, or `verify --workers N`), every rank calls this with the same request:
    each verifies its shard of the batches, every rank gets the merged result, and rank 0 alone writes the
    report. A rank that cannot load its inputs fails every rank with one line."""
    with process_group.all_or_none("loading the bundle and data"):
        bundle: Bundle = open_bundle(request.bundle)
        threat = ThreatModel(request.norm, parse_eps(request.eps))
        if (request.max_robust_drop is not None or request.min_agreement is not None) and request.reference is None:
            raise UserError("--max-robust-drop and --min-agreement need --reference")
        dataset = load_dataset(request.data, bundle.spec.shape)
        reference = request.model.load(request.reference).reference() if request.reference is not None else None
    options = request.options
    doc = run_verify(
        bundle, dataset, threat, options, reference=reference, defense_plan=attack_plan_for(bundle.manifest)
    )
    values = {"clean_accuracy": doc["clean_accuracy"], "robust_accuracy": doc["robust_accuracy"]}
    if reference is not None:  # the paired delta: R under the same white-box attacks on the same points
        value = reference_robust_accuracy(
            reference,
            dataset,
            threat,
            n=options.n,
            suite=options.suite,
            batch_size=options.batch_size,
            seed=options.seed,
        )
        doc["reference_robust_accuracy"] = value
        doc["robust_delta_vs_reference"] = doc["robust_accuracy"] - value
        values["robust_drop_vs_reference"] = -doc["robust_delta_vs_reference"]
        values["top1_agreement_with_reference"] = doc["models"]["R"]["top1_agreement_with_E"]
    doc["gates"] = gates.evaluate_all(
        gates.minimum("clean_accuracy", request.min_clean_acc, "--min-clean-acc")
        + gates.minimum("robust_accuracy", request.min_robust_acc, "--min-robust-acc")
        + gates.maximum("robust_drop_vs_reference", request.max_robust_drop, "--max-robust-drop")
        + gates.minimum("top1_agreement_with_reference", request.min_agreement, "--min-agreement"),
        values,
    )
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


def tune(request: TuneRequest, log: Callable[[str], None] = lambda message: None) -> Result:
    """Run a tune; the document is frontier.json's. A tune that finds no plan within the budget fails its gate."""
    loaded = request.model_options.load(request.model)
    calib = load_dataset(request.calib, loaded.spec.shape, split="train")
    data = load_dataset(request.data, loaded.spec.shape)
    doc = run_tune(loaded, request.out, calib, data, request.options, log)
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
