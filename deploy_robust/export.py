"""export_bundle: an ingested model -> a bundle directory (model.onnx + manifest.json [+ calibration.json]).

Float precisions export the graph directly. Quantized ones (int8, int4, mixed) export the
FP32 graph, decide each layer's precision (`quant.plan`), calibrate the activation tensors
the target profile quantizes (or reuse a calibration cache), insert Q/DQ for that profile
(`exporters.qdq`), check the result, and write it all atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from deploy_robust.bundle import Bundle, write_bundle
from deploy_robust.bundle.manifest import CalibrationSection, ModelSection, PrecisionSection, build_document, dumps
from deploy_robust.calibrators.collect import calibrate, calibration_document, load_cache
from deploy_robust.calibrators.layer_inputs import input_grams
from deploy_robust.calibrators.methods import METHODS
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.exporters import export_float_onnx
from deploy_robust.exporters.fallback import fall_back_until
from deploy_robust.exporters.float_onnx import DEFAULT_OPSET, FLOAT_PRECISIONS, INPUT_NAME, OUTPUT_NAME, graph_opset
from deploy_robust.cpu import u8s8_saturates
from deploy_robust.exporters.profiles import INT8_WEIGHT_RANGES, get_profile
from deploy_robust.exporters.qdq import quantize_model, tensors_to_calibrate
from deploy_robust.exporters.tensorrt_rules import check_tensorrt_rules
from deploy_robust.exporters.trained_grid import quantize_on_trained_grid
from deploy_robust.export_checks import check_agreement, check_normalization
from deploy_robust.hashing import sha256_bytes
from deploy_robust.ingest import LoadedModel
from deploy_robust.ingest.kinds import trained_grid_kind
from deploy_robust.limits import finite_number, whole_number
from deploy_robust.onnx_ops import MATRIX_OPS
from deploy_robust.quant.fake_quant import freeze
from deploy_robust.onnx_torch import graph_is_stochastic
from deploy_robust.quant.plan import MODES, make_plan
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.progress import check_deadline
from deploy_robust.seeding import seed_everything
from deploy_robust.targets import get_target

WEIGHT_ROUNDINGS = ("gptq", "nearest")
INT4_OPSET = 21
# Sanity bound on a fresh FP32 export against its torch reference; parity proper is `eval --reference`.
_SELF_CHECK_TOL = 1e-3


@dataclass(frozen=True)
class CalibrationOptions:
    """How a calibrated export (int8, int4, mixed) sets its activation ranges."""

    method: str = "mse"  # calibrators.methods.METHODS
    n: int = 512  # the first n calibration images
    percentile: float = 99.99  # for method "percentile"
    cache: str | Path | None = None  # a calibration.json to reuse (checked against the float graph's hash)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"--calib-method must be one of {', '.join(METHODS)}; got {self.method}")
        whole_number(self.n, "--calib-n", 1, 1 << 24)
        finite_number(self.percentile, "--percentile", 0, 100)
        if not self.percentile > 0:
            raise UserError(f"--percentile must lie in (0, 100]; got {self.percentile:g}")


@dataclass(frozen=True)
class ExportOptions:
    """Every setting of one export, checked once, here.

    `weight_rounding` (calibrated int8/int4/mixed): "gptq" rounds each quantized layer's weights to keep
    its output on the calibration images close (`quant.gptq`), "nearest" rounds each weight on its own.
    `min_agreement`: keep the most sensitive layers in FP32 until the quantized graph's top-1 agrees with
    the float graph's on at least this share of the calibration images (`exporters.fallback`).
    `int8_weights` (ort-cpu, calibrated): "full" 8-bit weights on [-127, 127], "reduced" on [-63, 63] (exact on
    every x86 CPU, see deploy_robust.cpu), "auto" full where this CPU does not saturate (VNNI, AMX, non-x86)
    and reduced elsewhere. The manifest records the choice; a full-range bundle loaded by ONNX Runtime on a
    CPU that would saturate runs unfused (exact, slower) with a warning."""

    precision: str = "fp32"
    target: str = "ort-cpu"
    calibration: CalibrationOptions = CalibrationOptions()
    plan_file: str | Path | None = None  # per-layer precisions for precision "mixed"
    dynamic_batch: bool = True
    opset: int = DEFAULT_OPSET
    seed: int = 0
    weight_rounding: str = "gptq"
    min_agreement: float | None = None
    int8_weights: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in MODES:
            raise UserError(f"--precision must be one of {', '.join(MODES)}; got {self.precision}")
        get_target(self.target, export=True)
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise UserError(f"--min-agreement must be in (0, 1]; got {self.min_agreement:g}")
        if self.min_agreement is not None and self.precision in FLOAT_PRECISIONS:
            raise UserError("--min-agreement goes with a calibrated --precision (int8, int4, mixed)")
        if self.int8_weights not in INT8_WEIGHT_RANGES:
            raise UserError(f"--int8-weights must be one of {', '.join(INT8_WEIGHT_RANGES)}; got {self.int8_weights}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise UserError(
                f"--weight-rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}; got {self.weight_rounding}"
            )


def export_bundle(
    loaded: LoadedModel, out: str | Path, options: ExportOptions = ExportOptions(), *, calib: Dataset | None = None
) -> Bundle:
    """`loaded` exported as `options` say into the bundle folder `out` (written whole, atomically); `calib`: the
    calibration images of a calibrated export."""
    seed_everything(options.seed)
    check_normalization(loaded, calib)
    job = _Job(loaded, Path(out), options, calib)
    precision = options.precision
    own_grid = trained_grid_kind(loaded.module)  # DQ models, EMPIR ensembles with low-precision members
    trained = own_grid[1] if own_grid and precision in ("int8", "int4") else None  # int4 accepted: the grid decides
    _, fake_quantizers = freeze(loaded.module)
    if own_grid and trained is None and not own_grid[0].float_export:
        raise UserError(
            f"{loaded.source['file']} is a {own_grid[0].title or own_grid[0].name} model and exports on its "
            "trained grid: use --precision int8"
        )
    if (trained is not None or fake_quantizers) and options.min_agreement is not None:
        raise UserError(
            f"{loaded.source['file']} exports on its trained grid; --min-agreement applies to calibrated exports"
        )
    if trained is not None:
        form = _trained_grid_export(job, *trained)
    elif fake_quantizers:
        form = _fake_quantized_export(job, fake_quantizers)
    elif precision in FLOAT_PRECISIONS:
        form = _float_export(job)
    else:
        form = _calibrated_export(job, calib)
    return _finish(job, form)


@dataclass
class _Job:
    """What every export form needs to know about one export."""

    loaded: LoadedModel
    out: Path
    options: ExportOptions
    calib: Dataset | None = None  # the calibration images, also what the export's checks run on

    @property
    def batch(self) -> int | str:
        return self.loaded.fixed_batch or ("dynamic" if self.options.dynamic_batch else 2)

    def float_onnx(self, module: torch.nn.Module, precision: str = "fp32", opset: int | None = None):
        return export_float_onnx(
            module,
            self.loaded.spec,
            precision,
            opset=opset or self.options.opset,
            dynamic_batch=self.options.dynamic_batch,
            fixed_batch=self.loaded.fixed_batch,
        )


@dataclass
class _Form:
    """What an export form produced: the graph and what the manifest records about it."""

    model: onnx.ModelProto
    exporter: str
    layers: list[dict]
    files: dict[str, bytes] = field(default_factory=dict)
    calibration: dict | None = None
    rounding: str | None = None
    fallback: dict | None = None
    int8_weights: dict | None = None


def _trained_grid_export(job: _Job, deployed: torch.nn.Module, grid) -> _Form:
    """Q/DQ at exactly the trained scales and grids (exporters.trained_grid): DQ models, EMPIR members."""
    result = job.float_onnx(deployed)
    quantized, plan = quantize_on_trained_grid(result.model, grid, get_profile(job.options.target))
    _check_graph(quantized.model, job.options.target)
    return _Form(quantized.model, result.exporter, _layer_records(plan, job.loaded))


def _fake_quantized_export(job: _Job, fake_quantizers: int) -> _Form:
    """Already quantized (torch.ao FakeQuantize or DQ training): export exactly the trained grid."""
    if job.options.precision not in ("int8", "int4"):
        raise UserError(
            f"{job.loaded.source['file']} carries {fake_quantizers} fake-quantizers and exports on its "
            "trained grid: use --precision int8"
        )
    frozen_module, _ = freeze(job.loaded.module)
    result = job.float_onnx(frozen_module)
    _check_graph(result.model, job.options.target)
    layers = [
        layer | {"precision": "trained grid", "reason": "fake-quantized in training; no recalibration"}
        for layer in job.loaded.layers
    ]
    return _Form(result.model, result.exporter, layers)


def _float_export(job: _Job) -> _Form:
    result = job.float_onnx(job.loaded.module, job.options.precision)
    layers = [
        layer | {"precision": job.options.precision, "reason": f"{job.options.precision} export"}
        for layer in job.loaded.layers
    ]
    return _Form(result.model, result.exporter, layers)


def _calibrated_export(job: _Job, calib: Dataset | None) -> _Form:
    """FP32 graph -> per-layer plan -> calibrated ranges (and GPTQ statistics) -> Q/DQ for the target."""
    c, plan_file, min_agreement = job.options.calibration, job.options.plan_file, job.options.min_agreement
    weights = _int8_weight_range(job)
    loaded, profile = job.loaded, get_profile(job.options.target, weights["range"] if weights else "reduced")
    check_deadline()
    result = job.float_onnx(loaded.module)
    check_deadline()
    plan = make_plan(result.model, job.options.precision, job.options.target, plan_file)
    if _stores_int4(plan, profile) and job.options.opset < INT4_OPSET:
        # INT4 tensors need opset 21: export the float graph there, so ops keep their semantics
        result = job.float_onnx(loaded.module, opset=INT4_OPSET)
        plan = make_plan(result.model, job.options.precision, job.options.target, plan_file)
    float_model = result.model
    tensors = tensors_to_calibrate(float_model, plan, profile)
    graph_hash = sha256_bytes(float_model.SerializeToString())
    ranges, calibration = _ranges(
        float_model,
        tensors,
        graph_hash,
        calib,
        c.method,
        c.n,
        c.percentile,
        c.cache,
        profile.signed_activations,
        job.options.seed,
    )
    grams, rounding = _input_grams(float_model, plan, calib, c.n, job.options.weight_rounding)
    cache: dict = {}

    def quantize(layer_plan):
        return quantize_model(float_model, layer_plan, ranges, profile, input_grams=grams, rounding_cache=cache)

    fallback = None
    if min_agreement is None:
        quantized = quantize(plan)
    else:
        if calib is None:
            raise UserError("--min-agreement measures agreement on the calibration images: pass --calib DATA")
        check, held_out = _agreement_images(calib, c.n)
        plan, quantized, fallback = fall_back_until(
            float_model, plan, quantize, check.as_float(), min_agreement, profile.signed_activations, loaded.fixed_batch
        )
        fallback["held_out"] = held_out
    _check_graph(quantized.model, job.options.target)
    files = {}
    if calibration is not None:
        calibration["activations"] = quantized.activations
        files["calibration.json"] = dumps(calibration).encode()
    layers = _layer_records(plan, loaded, {node: "gptq" for node in grams})
    return _Form(quantized.model, result.exporter, layers, files, calibration, rounding, fallback, weights)


def _int8_weight_range(job: _Job) -> dict | None:
    """ort-cpu's 8-bit weight range for this export, resolved and described for the manifest (None elsewhere)."""
    if job.options.target != "ort-cpu":
        return None
    chosen = job.options.int8_weights
    if chosen == "auto":
        chosen = "reduced" if u8s8_saturates() else "full"
    return {
        "range": chosen,
        "levels": 127 if chosen == "full" else 63,
        "requested": job.options.int8_weights,
        "exact_on": "every CPU ONNX Runtime runs on"
        if chosen == "reduced"
        else "x86 CPUs with VNNI or AMX, and non-x86 CPUs (elsewhere ONNX Runtime runs it unfused: exact, slower)",
    }


def _finish(job: _Job, form: _Form) -> Bundle:
    """Every form ends the same way: run the graph once in ONNX Runtime, record it, write the bundle."""
    loaded, model, batch = job.loaded, form.model, job.batch
    check_deadline()  # under a tune's time budget: the checks below are seconds on a real-size model
    _self_check(model, loaded, job.options.precision, job.options.seed, batch if isinstance(batch, int) else 4)
    data = model.SerializeToString()
    if not graph_is_stochastic(model):
        check_agreement(data, loaded, job.calib, job.options.precision)
    files = dict(form.files) | {"model.onnx": data}
    c = form.calibration
    manifest = build_document(
        ModelSection(
            "model.onnx", sha256_bytes(data), None if batch == "dynamic" else batch, graph_is_stochastic(model),
            graph_opset(model), f"torch.onnx ({form.exporter})", model.ir_version, INPUT_NAME, OUTPUT_NAME,
        ),
        loaded.spec,
        PrecisionSection(job.options.precision, tuple(form.layers), form.rounding, form.fallback, form.int8_weights),
        job.options.target,
        None if c is None else CalibrationSection(c["method"], c["num_images"], c["dataset"], c.get("percentile")),
        loaded.source,
        loaded.defense,
        loaded.transforms,
        job.options.seed,
    )  # fmt: skip
    return write_bundle(job.out, files, manifest)


def _layer_records(plan, loaded: LoadedModel, rounding: dict[str, str] | None = None) -> list[dict]:
    """The manifest's per-layer precision entries, with each layer's dtype in the source model and, for
    layers with calibrated integer weights, how they were rounded."""
    sources = {layer["name"]: layer["source_dtype"] for layer in loaded.layers}
    records = []
    for p in plan:
        record = p.to_json() | {"source_dtype": sources.get(p.name, "float32")}
        if rounding is not None and p.integer_weights:
            record["weight_rounding"] = rounding.get(p.node, "nearest")
        records.append(record)
    return records


def _input_grams(
    model: onnx.ModelProto, plan, calib: Dataset | None, calib_n: int, rounding: str
) -> tuple[dict[str, np.ndarray], str]:
    """Input statistics for error-compensating rounding, and the rounding the manifest records."""
    if rounding == "nearest":
        return {}, "nearest"
    if calib is None:
        return {}, "nearest (gptq needs --calib images; a calibration cache holds only ranges)"
    by_name = {node.name: node for node in model.graph.node}
    nodes = [by_name[p.node] for p in plan if p.integer_weights]
    return input_grams(model, nodes, calib.take(calib_n)), "gptq"


def _stores_int4(plan, profile) -> bool:
    return any(p.precision == "int4" and (p.op in MATRIX_OPS or profile.int4_conv_storage == "int4") for p in plan)


def _ranges(model, tensors, graph_hash, calib, method, calib_n, percentile, cache, signed, seed):
    if not tensors:
        return {}, None
    if cache is not None:
        ranges, doc = load_cache(cache, graph_hash, tensors)
        return ranges, doc
    if calib is None:
        raise UserError(
            "quantized export needs calibration data: pass --calib DATA (or --calib-cache calibration.json)"
        )
    subset = calib.take(calib_n)
    ranges = calibrate(model, tensors, subset, method, percentile=percentile, signed=signed)
    doc = calibration_document(
        ranges,
        method=method,
        percentile=percentile,
        num_images=len(subset),
        graph_sha256=graph_hash,
        dataset=calib.name,
        seed=seed,
    )
    return ranges, doc


# Images --min-agreement measures on: held out from calibration where the data has them.
_AGREEMENT_IMAGES = 1000
_MIN_HELD_OUT = 200


def _agreement_images(calib: Dataset, calib_n: int) -> tuple[Dataset, bool]:
    """The calibration data's images after the first calib_n (held out), else the calibration images."""
    rest = calib.skip(calib_n)
    if rest is not None and len(rest) >= _MIN_HELD_OUT:
        return rest.take(_AGREEMENT_IMAGES), True
    return calib.take(calib_n), False


def _check_graph(model: onnx.ModelProto, target: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise RuntimeError(
            f"internal error: the quantized graph fails onnx.checker: {str(e).splitlines()[0]}"
        ) from None
    if target == "tensorrt":
        violations = check_tensorrt_rules(model)
        if violations:
            raise RuntimeError("internal error: tensorrt bundle breaks its rules: " + "; ".join(violations[:5]))


def _self_check(model: onnx.ModelProto, loaded: LoadedModel, precision: str, seed: int, batch: int) -> None:
    """Load the new graph in ONNX Runtime (as the runner will) and run it once."""
    runner = OnnxRuntimeRunner(
        model.SerializeToString(), fixed_batch=batch if loaded.fixed_batch else None, optimization="basic"
    )
    x = np.random.default_rng(seed).random((batch, *loaded.spec.shape), dtype=np.float32)
    got = runner.infer(x)
    if graph_is_stochastic(model):
        # A stochastic defense: outputs differ run to run, so no exact parity; the draws must
        # survive export (a graph that repeats itself would have frozen one random mask).
        if not np.isfinite(got).all() or np.array_equal(got, runner.infer(x)):
            raise RuntimeError("internal error: the exported stochastic graph is non-finite or no longer random")
    elif precision == "fp32":
        with torch.no_grad():
            want = loaded.reference()(torch.from_numpy(x)).numpy()
        if float(np.abs(got - want).max()) > _SELF_CHECK_TOL:
            raise RuntimeError(
                f"internal error: exported graph differs from the model by "
                f"{float(np.abs(got - want).max()):.3g} on random inputs"
            )
    elif not np.isfinite(got).all():
        raise RuntimeError("internal error: the exported graph produces non-finite logits")


def onnx_summary(path: Path) -> dict:
    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "nodes": len(model.graph.node),
        "ops": dict(sorted(ops.items())),
        "initializers": len(model.graph.initializer),
        "bytes": path.stat().st_size,
    }
