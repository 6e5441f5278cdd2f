"""Run the float graph on calibration data and stream the chosen tensors into calibrators.

ONNX Runtime runs the float model with the tensors to calibrate added as graph outputs,
one batch at a time; each calibrator keeps bounded state, so memory does not grow with
the number of calibration images. Results are saved as `calibration.json` and can be
reused (`--calib-cache`) when the float graph's hash matches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from deploy_robust import limits
from deploy_robust.calibrators.methods import METHODS, make
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.progress import progress
from deploy_robust.progress import check_deadline

SCHEMA = "deploy-robust/calibration"
SCHEMA_VERSION = 1


def calibrate(
    model: onnx.ModelProto,
    tensors: list[str],
    dataset: Dataset,
    method: str = "mse",
    *,
    batch_size: int = 64,
    percentile: float = 99.99,
    signed: bool = False,
) -> dict[str, tuple[float, float]]:
    """Ranges (low, high) of each tensor in `tensors` over `dataset`."""
    if method not in METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(METHODS)}; got {method}")
    if not tensors:
        return {}
    calibrators = {name: make(method, percentile=percentile, signed=signed) for name in tensors}
    check_deadline()
    for values in stream_tensors(model, tensors, dataset, batch_size, f"calibrate ({method})"):
        for name, value in values.items():
            check_deadline()  # an MSE search over a large tensor takes a while: a tune's budget stops it here
            calibrators[name].update(value)
    return {name: tuple(float(v) for v in c.range()) for name, c in calibrators.items()}


def stream_tensors(
    model: onnx.ModelProto, tensors: list[str], dataset: Dataset, batch_size: int, desc: str
) -> Iterator[dict[str, np.ndarray]]:
    """Run the float graph batch by batch and yield the named intermediate tensors of each batch.

    A graph with a fixed batch size (a `torch.export` program, `--static-batch N`) is fed in chunks of
    that size, the last one padded with zero images whose rows are dropped from every tensor, so the
    statistics see exactly the calibration images. Calibration data with NaN or Inf is refused, naming
    the batch and its images."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in existing:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    fixed = fixed if isinstance(fixed, int) and fixed > 0 else None
    steps = math.ceil(len(dataset) / batch_size)
    for index, (x, _) in enumerate(progress(dataset.batches(batch_size), total=steps, desc=desc)):
        if not np.isfinite(x).all():
            raise UserError(
                f"calibration batch {index} (images {index * batch_size}..{index * batch_size + len(x) - 1}) "
                "contains NaN or Inf"
            )
        if fixed is None or len(x) == fixed:
            yield dict(zip(tensors, session.run(tensors, {input_name: x})))
            continue
        parts = []
        for start in range(0, len(x), fixed):
            chunk = x[start : start + fixed]
            real = len(chunk)
            if real < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - real, *chunk.shape[1:]), chunk.dtype)])
            parts.append([value[:real] for value in session.run(tensors, {input_name: chunk})])
        yield {name: np.concatenate(values) for name, values in zip(tensors, zip(*parts))}


def calibration_document(
    ranges: dict[str, tuple[float, float]],
    *,
    method: str,
    percentile: float,
    num_images: int,
    graph_sha256: str,
    dataset: str,
    seed: int,
) -> dict[str, Any]:
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "num_images": num_images,
        "dataset": dataset,
        "float_graph_sha256": graph_sha256,
        "seed": seed,
        "tensors": {k: {"low": v[0], "high": v[1]} for k, v in sorted(ranges.items())},
    }
    if method == "percentile":
        doc["percentile"] = percentile
    return doc


MAX_RANGE = 1e6  # |activation| bound a cache may claim; real ranges are orders of magnitude smaller


def _checked_ranges(tensors: Any, path: Path) -> dict[str, tuple[float, float]]:
    """Every range finite, ordered, of non-zero width and within MAX_RANGE: a cache that says otherwise
    would give a bundle at chance accuracy, so it is refused, naming the tensor."""
    if not isinstance(tensors, dict):
        raise UserError(f"{path}: 'tensors' must map tensor names to {{low, high}}")
    ranges = {}
    for name, entry in tensors.items():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: the range of {name} is not an object with low and high")
        low = limits.finite_number(entry.get("low"), f"{path.name}: low of {name}", -MAX_RANGE, MAX_RANGE)
        high = limits.finite_number(entry.get("high"), f"{path.name}: high of {name}", -MAX_RANGE, MAX_RANGE)
        if not low < high:
            raise UserError(
                f"{path.name}: the range of {name} is [{low:g}, {high:g}], which is empty or of zero width; recalibrate"
            )
        ranges[name] = (low, high)
    return ranges


def load_cache(path: str | Path, graph_sha256: str, tensors: list[str]) -> tuple[dict[str, tuple[float, float]], dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "calibration.json"
    if not path.is_file():
        raise UserError(f"calibration cache not found: {path}")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a deploy-robust calibration file")
    ranges = _checked_ranges(doc.get("tensors"), path)
    if doc.get("float_graph_sha256") != graph_sha256:
        raise UserError(f"{path} was calibrated for a different model (float graph hash differs); recalibrate")
    missing = [t for t in tensors if t not in ranges]
    if missing:
        raise UserError(
            f"{path} lacks ranges for {len(missing)} tensors this export needs (e.g. {missing[0]}); "
            "it was made for another target or precision; recalibrate"
        )
    return ranges, doc
