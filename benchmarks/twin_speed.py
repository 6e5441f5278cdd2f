"""Gradient steps per second of a quantized bundle's twin (what verify attacks): its weights dequantized at every
forward pass (as before) or once, at load (`onnx_torch.graph.FOLDABLE`), in NCHW and channels-last.

One forward and backward pass to the input per image, weights frozen as verify freezes them; the forms are timed
interleaved, round by round, and the best round of each is kept (the machine is shared). Batch 125 is a
500-point check's first attack on a quarter of the points, batch 22 the few robust points APGD-T works on last.

    python benchmarks/twin_speed.py BUNDLE [--batches 125,22] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from machine import save_result

from deploy_robust.bundle.store import open_bundle
from deploy_robust.onnx_torch import graph
from deploy_robust.quant.twin import twin_module
from deploy_robust.verify.speed import prepare_for_attack

FORMS = [(fold, layout) for fold in (False, True) for layout in ("contiguous", "channels_last")]


def _twin(model: Path, fold: bool, layout: str, example: torch.Tensor):
    """The twin as verify prepares it (frozen weights, `layout`, fp32 gradients), its weights folded or not."""
    folded = graph.FOLDABLE
    graph.FOLDABLE = folded if fold else frozenset()  # read when a module is built
    try:
        module = twin_module(model, float_dtype=torch.float32, bpda=True)
    finally:
        graph.FOLDABLE = folded
    return prepare_for_attack(module, example, layout, "fp32")[0]


def _step_seconds(model, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    start = time.perf_counter()
    model(x).logsumexp(1).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--batches", default="125,22")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    bundle = open_bundle(args.bundle)
    example = torch.rand(1, *bundle.spec.shape)
    twins = {form: _twin(bundle.model_path, *form, example) for form in FORMS}
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.rand(batch, *bundle.spec.shape)
        best = dict.fromkeys(FORMS, float("inf"))
        for _ in range(args.rounds + 1):  # the first round warms oneDNN's kernel cache
            for form, twin in twins.items():
                best[form] = min(best[form], _step_seconds(twin, x))
        for (fold, layout), seconds in best.items():
            rows.append({"batch": batch, "weights": "once" if fold else "every pass", "layout": layout,
                         "images_per_s": round(batch / seconds, 1)})  # fmt: skip
            print(rows[-1], flush=True)
    save_result("twin_speed", rows, bundle=str(args.bundle))


if __name__ == "__main__":
    main()
