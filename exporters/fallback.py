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

from deploy_robust.quant.plan import LayerPlan

QUANTIZED = ("int8", "int4")


def fall_back_until(float_model: onnx.ModelProto, plan: list[LayerPlan],
                    quantize: Callable[[list[LayerPlan]], onnx.ModelProto], images: np.ndarray, target: float,
                    signed_activations: bool, fixed_batch: int | None = None
                    ) -> tuple[list[LayerPlan], onnx.ModelProto, dict]:
    """(final plan, its quantized graph, a report for the manifest). `quantize(plan)` builds the graph
    for a plan; `images` are float inputs; `signed_activations` graphs run unfused, as their runner does."""
    reference = _predict(float_model, images, "all", fixed_batch)
    optimization = "basic" if signed_activations else "all"

    def agreement(model: onnx.ModelProto) -> float:
        return float((_predict(model, images, optimization, fixed_batch) == reference).mean())

    model = quantize(plan)
    before = agreement(model)
    report = {"target": target, "images": len(images), "agreement_all_quantized": before, "kept_fp32": []}
    if before >= target:
        report["agreement"] = before
        return plan, model, report
    candidates = [p for p in plan if p.precision in QUANTIZED]
    alone = {p.node: agreement(quantize(_keep_fp32(plan, {p.node}, {}))) for p in candidates}
    kept: dict[str, float] = {}
    score = before
    for layer in sorted(candidates, key=lambda p: -alone[p.node]):
        kept[layer.node] = alone[layer.node]
        plan_now = _keep_fp32(plan, set(kept), alone)
        model = quantize(plan_now)
        score = agreement(model)
        report["kept_fp32"].append({"layer": layer.name, "agreement_when_kept_alone": alone[layer.node],
                                    "agreement_after": score})
        if score >= target:
            break
    report["agreement"] = score
    return _keep_fp32(plan, set(kept), alone, before), model, report


def _keep_fp32(plan: list[LayerPlan], nodes: set[str], alone: dict[str, float],
               before: float | None = None) -> list[LayerPlan]:
    def reason(p: LayerPlan) -> str:
        if p.node not in alone or before is None:
            return "kept FP32 (--min-agreement)"
        return (f"kept FP32 by --min-agreement: the most sensitive layers first (top-1 agreement with FP32 "
                f"{100 * before:.1f}% quantized, {100 * alone[p.node]:.1f}% with this layer alone in FP32)")

    return [replace(p, precision="fp32", reason=reason(p)) if p.node in nodes else p for p in plan]


def _predict(model: onnx.ModelProto, images: np.ndarray, optimization: str, fixed_batch: int | None) -> np.ndarray:
    from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(model.SerializeToString(), optimization=optimization, fixed_batch=fixed_batch)
    return np.concatenate([runner.infer(images[i:i + 128]).argmax(1) for i in range(0, len(images), 128)])
