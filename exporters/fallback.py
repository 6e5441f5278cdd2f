"""Accuracy-aware fallback: keep the layers whose quantization moves the predictions most in FP32,
one at a time, until the quantized graph agrees with the float graph on enough images.

Sensitivity is measured, not guessed: for each quantized layer, the top-1 agreement with the
float graph when only that layer stays FP32. Layers then go back to FP32 in decreasing order of
that agreement until the whole graph reaches the target (`export --min-agreement`). Agreement
is measured through ONNX Runtime on the CPU, on images the caller picks (export uses up to 1,000
images of the calibration data that calibration did not see, else the calibration images);
`deploy-robust eval --reference` gives the figure on a test set.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import onnx

from deploy_robust.exporters.qdq import QuantizeResult
from deploy_robust.progress import progress
from deploy_robust.quant.plan import LayerPlan
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.runtimes.onnxruntime_session import optimization_level

QUANTIZED = ("int8", "int4")


def fall_back_until(
    float_model: onnx.ModelProto,
    plan: list[LayerPlan],
    quantize: Callable[[list[LayerPlan]], QuantizeResult],
    images: np.ndarray,
    target: float,
    signed_activations: bool,
    fixed_batch: int | None = None,
) -> tuple[list[LayerPlan], QuantizeResult, dict]:
    """(final plan, its quantized graph, a report for the manifest). `quantize(plan)` builds the graph
    for a plan; `images` are float inputs; `signed_activations` graphs run unfused, as their runner does."""
    reference = _predict(float_model, images, "all", fixed_batch)
    optimization = optimization_level(quantized=True, signed_activations=signed_activations)

    def agreement(result: QuantizeResult) -> float:
        return float((_predict(result.model, images, optimization, fixed_batch) == reference).mean())

    result = quantize(plan)
    before = score = agreement(result)
    report = {"target": target, "images": len(images), "agreement_all_quantized": before, "kept_fp32": []}
    candidates = [p for p in plan if p.precision in QUANTIZED] if before < target else []
    alone = {
        p.node: agreement(quantize(_keep_fp32(plan, {p.node})))
        for p in progress(candidates, total=len(candidates), desc="--min-agreement: each layer alone in FP32")
    }
    kept: set[str] = set()
    for layer in sorted(candidates, key=lambda p: -alone[p.node]):
        kept.add(layer.node)
        result = quantize(_keep_fp32(plan, kept))
        score = agreement(result)
        report["kept_fp32"].append(
            {"layer": layer.name, "agreement_when_kept_alone": alone[layer.node], "agreement_after": score}
        )
        if score >= target:
            break
    report["agreement"] = score
    reason = (
        "kept FP32 by --min-agreement: the most sensitive layers first (top-1 agreement with FP32 "
        f"{100 * before:.1f}% quantized, {{:.1f}}% with this layer alone in FP32)"
    )
    final = [
        replace(p, precision="fp32", reason=reason.format(100 * alone[p.node])) if p.node in kept else p for p in plan
    ]
    return final, result, report


def _keep_fp32(plan: list[LayerPlan], nodes: set[str]) -> list[LayerPlan]:
    return [replace(p, precision="fp32") if p.node in nodes else p for p in plan]


def _predict(model: onnx.ModelProto, images: np.ndarray, optimization: str, fixed_batch: int | None) -> np.ndarray:
    runner = OnnxRuntimeRunner(model.SerializeToString(), optimization=optimization, fixed_batch=fixed_batch)
    return np.concatenate([runner.infer(images[i : i + 128]).argmax(1) for i in range(0, len(images), 128)])
