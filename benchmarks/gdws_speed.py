"""GDWS speed: ResNet-18 (CIFAR) with 4x fewer MACs against the original, FP32 and INT8, on ONNX Runtime CPU
(or OpenVINO, `--runtime openvino`, with where the time goes by OpenVINO's own per-layer profile).

Every variant runs interleaved in one process, round by round (this machine is shared and
noisy); figures are medians over rounds. Variants:

- original FP32 / INT8 (`ort-cpu` profile);
- GDWS at a whole-model 4x MAC reduction (the default per-layer budget, MEGO on the trained
  weights in every layer, plain Frobenius error), FP32 / INT8, with G rounded to 16 (default)
  and unrounded (FP32);
- the uniform g = 2 allocation in both layouts: gather + depthwise (what GDWSConv2d emits)
  and a depthwise conv with a channel multiplier of 2 (no gather), FP32 / INT8.

Weights: the FGSM-trained ResNet-18 from benchmarks/train_resnet18_cifar.py when it has been
trained (benchmarks/.models/), else a fixed random initialization (recorded in the result).
With --torch-device cuda it also times the torch modules themselves on the GPU (original vs
GDWS, FP32 and FP16 autocast).

    python benchmarks/gdws_speed.py [--rounds 5] [--seconds 2] [--threads 2] [--torch-device cuda]
                                    [--runtime openvino] [--model pyautoattack-resnet18]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import calibration_for, interleaved_throughput, resnet18_random
from machine import save_result
from train_resnet18_cifar import CHECKPOINT

from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel, load_model
from deploy_robust.runtimes import RuntimeOptions
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.runtimes.openvino_runner import OpenVINORunner
from deploy_robust.transforms.gdws import GDWSConv2d, GDWSPlan, apply_gdws
from deploy_robust.transforms.gdws.network import find_layers
from deploy_robust.transforms.gdws.rewrite import GDWSRequest, rewrite_model

HERE = Path(__file__).resolve().parent


def resnet18(model: str = "fgsm") -> tuple[LoadedModel, str]:
    if model == "pyautoattack-resnet18":
        from autoattack_referee import _load

        return _load(model), "pyautoattack's trained CIFAR ResNet-18 (93.8% clean), through --arch"
    if CHECKPOINT.exists():
        return load_model(CHECKPOINT, "resnet18"), f"resnet18 (CIFAR), FGSM-trained ({CHECKPOINT.name})"
    return resnet18_random(), "resnet18 (CIFAR), random init (run train_resnet18_cifar.py for trained weights)"


def budget_for_model_ratio(loaded: LoadedModel, ratio: float) -> float:
    """The rewritable-MAC budget that gives the whole model `ratio` x fewer MACs."""
    layers, _, model_macs = find_layers(loaded.module, loaded.spec.shape)
    fixed = model_macs - sum(layer.original_macs for layer in layers if layer.rewritable)
    return (model_macs / ratio - fixed) / (model_macs - fixed)


def uniform(loaded: LoadedModel, g: int, multiplier_layout: bool) -> LoadedModel:
    """Every rewritable conv as GDWS with g_c = g (uniform), as gather + depthwise or as a channel multiplier."""
    module = copy.deepcopy(loaded.module)
    layers, _, model_macs = find_layers(module, loaded.spec.shape)
    for layer in layers:
        if layer.rewritable:
            layer.allocation, layer.reason = [g] * layer.in_channels, "rewritten"
    apply_gdws(module, GDWSPlan(layers, 0.0, None, None, model_macs))
    if multiplier_layout:
        for name, gdws in [(n, m) for n, m in module.named_modules() if isinstance(m, GDWSConv2d)]:
            dw = gdws.depthwise  # output channel c*g + k of a groups=C conv belongs to input channel c: same order
            grouped = nn.Conv2d(
                gdws.in_channels,
                gdws.width,
                dw.kernel_size,
                dw.stride,
                dw.padding,
                dw.dilation,
                groups=gdws.in_channels,
                bias=False,
            )
            grouped.weight.data.copy_(dw.weight.data)
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, child, nn.Sequential(grouped, gdws.pointwise))
    return LoadedModel(module.eval(), loaded.spec, loaded.source, layers=[])


def torch_gpu_rows(variants: dict[str, LoadedModel], device: str, rounds: int, seconds: float) -> list[dict]:
    rows = []
    for batch in (1, 32, 256):
        for half in (False, True):
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, loaded in variants.items():
                    model = loaded.reference().to(device).eval()
                    x = torch.rand(batch, *loaded.spec.shape, device=device)
                    with torch.no_grad(), torch.autocast("cuda", enabled=half):
                        for _ in range(10):
                            model(x)
                        torch.cuda.synchronize()
                        done, start = 0, time.perf_counter()
                        while time.perf_counter() - start < seconds:
                            model(x)
                            done += 1
                        torch.cuda.synchronize()
                    samples[name].append(done * batch / (time.perf_counter() - start))
            for name, values in samples.items():
                rows.append(
                    {
                        "variant": f"torch {device} {name} {'fp16' if half else 'fp32'}",
                        "batch": batch,
                        "throughput_median": float(np.median(values)),
                        "throughput_rounds": values,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--mac-reduction", type=float, default=4.0, help="whole-model MAC reduction (default 4)")
    parser.add_argument("--torch-device", help="also time the torch modules on this device (e.g. cuda)")
    parser.add_argument("--runtime", default="ort-cpu", choices=["ort-cpu", "openvino"])
    parser.add_argument("--model", default="fgsm", choices=["fgsm", "pyautoattack-resnet18"])
    args = parser.parse_args()
    original, model_name = resnet18(args.model)
    budget = budget_for_model_ratio(original, args.mac_reduction)
    gdws, plan = rewrite_model(original, GDWSRequest(budget=budget))
    gdws_exact, plan_exact = rewrite_model(original, GDWSRequest(budget=budget, channel_multiple=1))
    calib = calibration_for(original)
    builds = [
        ("original", original, "fp32"),
        ("original", original, "int8"),
        ("gdws", gdws, "fp32"),
        ("gdws", gdws, "int8"),
        ("gdws unrounded G", gdws_exact, "fp32"),
        ("uniform g=2 gather", uniform(original, 2, False), "fp32"),
        ("uniform g=2 gather", uniform(original, 2, False), "int8"),
        ("uniform g=2 multiplier", uniform(original, 2, True), "fp32"),
        ("uniform g=2 multiplier", uniform(original, 2, True), "int8"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for i, (name, loaded, precision) in enumerate(builds):
            bundle = export_bundle(
                loaded, Path(tmp) / str(i), ExportOptions(precision), calib=calib if precision == "int8" else None
            )
            paths[f"{name} {precision}"] = bundle.model_path
        if args.runtime == "openvino":
            options = RuntimeOptions(threads=args.threads, cache=False)
            runners = {name: OpenVINORunner(path, options) for name, path in paths.items()}
        else:
            runners = {name: OnnxRuntimeRunner(path, threads=args.threads) for name, path in paths.items()}
        for runner in runners.values():
            runner.activate()
        results = interleaved_throughput(runners, [int(b) for b in args.batches.split(",")], args.rounds, args.seconds)
        profiles = {}
        if args.runtime == "openvino":  # where the INT8 time goes, by op type, at batch 32
            x = np.zeros((32, *original.spec.shape), np.float32)
            for name in ("original int8", "gdws int8", "uniform g=2 gather int8"):
                by_op: dict[str, float] = {}
                for row in runners[name].layer_profile(x, repeats=5):
                    by_op[row["op"]] = by_op.get(row["op"], 0.0) + row["ms"]
                profiles[name] = {"ms_per_batch32": sum(by_op.values())} | {
                    op: ms
                    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])
                    if ms >= 0.005 * sum(by_op.values())
                }
    by = {(r["variant"], r["batch"]): r for r in results}
    for r in results:
        precision = r["variant"].rsplit(" ", 1)[1]
        r["x_original_same_precision"] = (
            r["throughput_median"] / by[(f"original {precision}", r["batch"])]["throughput_median"]
        )
    if args.torch_device:
        results += torch_gpu_rows({"original": original, "gdws": gdws}, args.torch_device, args.rounds, args.seconds)
    doc = plan.to_json()
    out = save_result(
        "gdws_speed"
        if (args.runtime, args.model) == ("ort-cpu", "fgsm")
        else f"gdws_speed_{args.runtime}_{args.model.replace('-', '_')}",
        results,
        model=model_name,
        runtime=args.runtime,
        profiles_ms_by_op=profiles,
        threads=args.threads,
        rounds=args.rounds,
        seconds_per_round=args.seconds,
        budget=budget,
        mac_ratio={
            "model": doc["model_macs"],
            "rewritable": doc["rewritable_macs"],
            "unrounded_model": plan_exact.to_json()["model_macs"],
        },
        layers=[
            {k: layer[k] for k in ("name", "G", "mac_ratio", "g_histogram") if k in layer}
            for layer in doc["layers"]
            if layer["replaced"]
        ],
    )
    print(
        f"{model_name}: whole model {doc['model_macs']['original'] / 1e6:.0f}M -> {doc['model_macs']['gdws'] / 1e6:.0f}M "
        f"MACs ({doc['model_macs']['ratio']:.2f}x)"
    )
    print("| variant | batch | images/s (median) | x original, same precision |\n|---|---|---|---|")
    for r in results:
        ratio = f"{r['x_original_same_precision']:.2f}" if "x_original_same_precision" in r else "-"
        print(f"| {r['variant']} | {r['batch']} | {r['throughput_median']:.0f} | {ratio} |")
    print(f"\nwritten {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
