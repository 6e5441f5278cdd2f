"""How close a bundle's INT8 convolutions run to the fastest INT8 convolution the runtime has on this CPU.

The roof: for each of ResNet-18's (CIFAR) stage shapes, 64 to 512 channels on 32x32 to 4x4 maps, a chain of eight
3x3 convolutions of that shape, each between Q/DQ pairs as our INT8 bundles have them (U8 activations, S8
per-channel weights on [-63, 63]); the fastest shape's MACs per second is the roof. Each chain is timed
interleaved with the bundle, round by round, the best round of each kept (the machine is shared); the bundle's
rate is its MACs per image over its time per image, and per layer, OpenVINO's own profile mapped back to the
graph's convolutions (ONNX Runtime renames the nodes it fuses, so it gets the whole model only). A model whose
layers run at the roof gets faster only by doing fewer MACs.

    python benchmarks/int8_roofline.py BUNDLE [BUNDLE ...] [--backends openvino,ort-cpu] [--batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from machine import save_result

from deploy_robust.bench.measure import measure as bench_measure
from deploy_robust.bundle.store import open_bundle
from deploy_robust.runtimes import create_runner
from deploy_robust.runtimes.base import RuntimeOptions
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.runtimes.onnxruntime_session import optimization_level
from deploy_robust.runtimes.openvino_runner import OpenVINORunner
from deploy_robust.tune.measure import layer_times, node_names
from deploy_robust.tune.space import layer_macs

ROOF_SHAPES = ((64, 32), (128, 16), (256, 8), (512, 4))  # (channels, side): ResNet-18's stages
DEPTH = 8


def roof_graph(channels: int, side: int, depth: int = DEPTH) -> onnx.ModelProto:
    """`depth` Q/DQ 3x3 convolutions (`channels` in and out, `side` x `side` maps, ReLU after each), every one
    between a Q/DQ pair on its input and one on its output, as in an INT8 bundle."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    scale, zero = const("act_scale", np.array(0.05, np.float32)), const("act_zero", np.array(0, np.uint8))
    x = "input"
    for i in range(depth):
        w = const(f"w{i}", rng.integers(-63, 64, (channels, channels, 3, 3), dtype=np.int8))
        w_scale = const(f"w{i}_scale", np.full(channels, 1e-3, np.float32))
        w_zero = const(f"w{i}_zero", np.zeros(channels, np.int8))
        bias = const(f"b{i}", np.zeros(channels, np.float32))
        nodes += [
            helper.make_node("QuantizeLinear", [x, scale, zero], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", scale, zero], [f"dq{i}"]),
            helper.make_node("DequantizeLinear", [w, w_scale, w_zero], [f"wdq{i}"], axis=0),
            helper.make_node("Conv", [f"dq{i}", f"wdq{i}", bias], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [x := f"r{i}"]),
        ]
    # a last Q/DQ pair: ONNX Runtime fuses a convolution into its integer kernel only when a Q follows it
    nodes += [
        helper.make_node("QuantizeLinear", [x, scale, zero], ["q_out"]),
        helper.make_node("DequantizeLinear", ["q_out", scale, zero], [x := "output"]),
    ]
    shape = ["batch", channels, side, side]
    graph = helper.make_graph(
        nodes,
        "int8_roof",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _roof_runner(backend: str, path: Path):
    if backend == "openvino":
        return OpenVINORunner(path, RuntimeOptions(cache=False), widen=False)
    level = optimization_level(quantized=True, signed_activations=False, device="cpu", full_range_weights=False)
    return OnnxRuntimeRunner(path, "cpu", optimization=level)


def _check_integer(runner, x: np.ndarray, name: str) -> None:
    """Stop where the runtime runs one of the roof's convolutions in float: it would not be a roof."""
    convolutions = [
        r for r in runner.layer_profile(x, repeats=1) if r["op"] in ("Conv", "FusedConv", "QLinearConv", "Convolution")
    ]
    floats = [r["layer"] for r in convolutions if r["precision"] != "int8"]
    if floats or len(convolutions) < DEPTH:
        raise SystemExit(f"roof {name}: {runner.name} ran {floats or 'fewer convolutions'} not in int8 kernels")


def _per_layer(runner, x: np.ndarray, bundle, graph: onnx.ModelProto, macs: dict[str, int], roof: float) -> dict:
    """OpenVINO's profile of the bundle, per weighted layer (named as `info` names it): its ms per batch and its
    rate against the roof's."""
    named = {entry["node"]: entry["name"] for entry in bundle.manifest.precision.layers if "node" in entry}
    rows = runner.layer_profile(x)
    times = layer_times(rows, node_names(graph, list(macs)))
    total = sum(r["ms"] for r in rows)
    if times is None:
        return {"profile_total_ms": total, "layers": None}
    layers = [
        {"layer": named.get(node, node), "mmacs": macs[node] / 1e6, "ms": ms, "gmacs": macs[node] * len(x) / ms / 1e6}
        for node, ms in times.items()
    ]
    for layer in layers:
        layer["of_roof"] = layer["gmacs"] / roof
    return {"profile_total_ms": total, "weighted_ms": sum(times.values()), "layers": layers}


def measure(bundle_path: Path, backend: str, batch: int, rounds: int) -> dict:
    """One bundle on one runtime: its rate and each roof shape's, timed interleaved (the result row)."""
    bundle = open_bundle(bundle_path)
    graph = onnx.load(str(bundle.model_path))
    macs = layer_macs(graph)
    with tempfile.TemporaryDirectory() as tmp:
        timed = {}  # name -> (runner, input shape, MACs per image)
        for channels, side in ROOF_SHAPES:
            path = Path(tmp) / f"roof_{channels}x{side}.onnx"
            onnx.save(roof_graph(channels, side), str(path))
            name, shape = f"{channels}x{side}x{side}", (channels, side, side)
            timed[name] = (_roof_runner(backend, path), shape, DEPTH * channels**2 * 9 * side**2)
            _check_integer(timed[name][0], np.zeros((batch, *shape), np.float32), name)
        model = create_runner(backend, bundle)
        timed["model"] = (model, bundle.spec.shape, sum(macs.values()))
        best = dict.fromkeys(timed, float("inf"))
        for round_ in range(rounds):
            for name, (runner, shape, _) in timed.items():
                # bench's own loop: rotating inputs, untimed warm-up runs first (kernels chosen, memory allocated)
                timing = bench_measure(runner, shape, batch, warmup=5 if round_ == 0 else 1, iters=10)
                best[name] = min(best[name], timing.latency_ms["p50"] / 1e3)
        rates = {name: macs_per_image * batch / best[name] / 1e9 for name, (_, _, macs_per_image) in timed.items()}
        model_gmacs = rates.pop("model")
        roof_gmacs = max(rates.values())
        result = {
            "bundle": str(bundle_path),
            "precision": bundle.precision,
            "backend": backend,
            "batch": batch,
            "execution": model.execution(),
            "roof_gmacs_by_shape": rates,
            "roof_gmacs": roof_gmacs,
            "model_mmacs_per_image": sum(macs.values()) / 1e6,
            "model_ms_per_image": 1e3 * best["model"] / batch,
            "model_gmacs": model_gmacs,
            "model_of_roof": model_gmacs / roof_gmacs,
        }
        if backend == "openvino":
            x = np.random.default_rng(0).random((batch, *bundle.spec.shape), dtype=np.float32)
            result |= _per_layer(model, x, bundle, graph, macs, roof_gmacs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="+", help="bundles to place against the roof")
    parser.add_argument("--backends", default="openvino,ort-cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="int8_roofline", help="results name")
    args = parser.parse_args()
    rows = []
    for path in args.bundle:
        for backend in args.backends.split(","):
            row = measure(path, backend, args.batch, args.rounds)
            rows.append(row)
            print(
                f"{path} on {backend}: {row['model_gmacs']:.0f} GMAC/s, roof {row['roof_gmacs']:.0f} GMAC/s "
                f"({100 * row['model_of_roof']:.0f}%), {row['model_ms_per_image']:.3f} ms per image",
                flush=True,
            )
    save_result(args.out, rows, script="int8_roofline")


if __name__ == "__main__":
    main()
