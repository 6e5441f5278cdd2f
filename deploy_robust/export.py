"""export_bundle: an ingested model -> a bundle directory (model.onnx + manifest.json), atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from deploy_robust.bundle import SCHEMA, SCHEMA_VERSION, Bundle, write_bundle
from deploy_robust.bundle.manifest import tool_versions
from deploy_robust.errors import UserError
from deploy_robust.exporters import export_float_onnx
from deploy_robust.exporters.float_onnx import DEFAULT_OPSET, FLOAT_PRECISIONS, INPUT_NAME, OUTPUT_NAME
from deploy_robust.hashing import sha256_bytes
from deploy_robust.ingest import LoadedModel
from deploy_robust.seeding import seed_everything

TARGETS = ("ort-cpu", "ort-cuda", "tensorrt")
# Sanity bound on a fresh FP32 export against its torch reference; parity proper is `eval --reference`.
_SELF_CHECK_TOL = 1e-3


def export_bundle(loaded: LoadedModel, out: str | Path, precision: str = "fp32", target: str = "ort-cpu", *,
                  dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, seed: int = 0) -> Bundle:
    if precision not in FLOAT_PRECISIONS:
        raise UserError(f"--precision {precision} is not available yet; choose from {', '.join(FLOAT_PRECISIONS)}")
    if target not in TARGETS:
        raise UserError(f"--target must be one of {', '.join(TARGETS)}; got {target}")
    seed_everything(seed)
    result = export_float_onnx(loaded.module, loaded.spec, precision, dynamic_batch=dynamic_batch,
                               fixed_batch=loaded.fixed_batch, opset=opset)
    data = result.model.SerializeToString()
    batch = loaded.fixed_batch or ("dynamic" if dynamic_batch else 2)
    _self_check(data, loaded, precision, seed, batch if isinstance(batch, int) else 4)
    manifest = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": {"file": "model.onnx", "sha256": sha256_bytes(data), "opset": opset,
                  "ir_version": result.model.ir_version, "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
                  "batch": batch, "exporter": f"torch.onnx ({result.exporter})"},
        "input": loaded.spec.to_json() | {"normalization_folded": loaded.spec.normalized},
        "precision": {"mode": precision, "layers": [
            layer | {"precision": precision, "reason": f"{precision} export"} for layer in loaded.layers]},
        "target": target,
        "calibration": None,
        "source": loaded.source,
        "tools": tool_versions(),
        "seed": seed,
    }
    return write_bundle(out, {"model.onnx": data}, manifest)


def _self_check(data: bytes, loaded: LoadedModel, precision: str, seed: int, batch: int) -> None:
    """Load the new graph in ONNX Runtime and run it once against the torch reference."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UserError(f"the exported graph does not load in ONNX Runtime: {str(e).splitlines()[0]}") from None
    x = np.random.default_rng(seed).random((batch, *loaded.spec.shape), dtype=np.float32)
    got = session.run(None, {INPUT_NAME: x})[0]
    with torch.no_grad():
        want = loaded.reference()(torch.from_numpy(x)).numpy()
    if precision == "fp32" and float(np.abs(got - want).max()) > _SELF_CHECK_TOL:
        raise RuntimeError(f"internal error: exported graph differs from the model by "
                           f"{float(np.abs(got - want).max()):.3g} on random inputs")


def onnx_summary(path: Path) -> dict:
    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"nodes": len(model.graph.node), "ops": dict(sorted(ops.items())),
            "initializers": len(model.graph.initializer), "bytes": path.stat().st_size}
