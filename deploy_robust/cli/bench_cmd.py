"""deploy-robust bench: latency and throughput of bundles on real runtimes; --compare for side-by-side ratios."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy_robust.api.bench import BenchRequest, bench, ratios
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, size, table
from deploy_robust.errors import UserError
from deploy_robust.runtimes import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", help="bundle to measure")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="BUNDLE",
        help="measure several bundles interleaved in one run and print ratios to the first",
    )
    parser.add_argument(
        "--backend", default="ort-cpu", help=f"comma-separated backends: {', '.join(BACKENDS)} (default ort-cpu)"
    )
    parser.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument(
        "--warmup", type=cli_args.non_negative_int, default=10, help="untimed iterations before measuring (default 10)"
    )
    parser.add_argument("--iters", type=cli_args.positive_int, help="timed iterations per batch (default: --duration)")
    parser.add_argument(
        "--duration", type=cli_args.positive_number, default=3.0, help="seconds per batch size (default 3)"
    )
    parser.add_argument(
        "--rounds", type=cli_args.positive_int, help="interleaved rounds (default 1, or 3 with --compare)"
    )
    parser.add_argument("--power", action="store_true", help="sample board power with tegrastats (Jetson)")
    parser.add_argument("--no-plot", action="store_true", help="do not write latency.png into the bundle")
    parser.add_argument("--frontier", metavar="PNG", help="write the deployment frontier plot (throughput vs accuracy)")
    parser.add_argument("--data", help="with --frontier: dataset for clean accuracy where a bundle has no verify.json")
    parser.add_argument(
        "--layers",
        action="store_true",
        help="time per layer from each runtime's own profiler (ORT profiling, OpenVINO performance "
        "counters) at the first --batch, with the kernel and precision it ran in",
    )
    cli_args.add_runtime_args(parser)


def run(args: argparse.Namespace) -> int:
    paths = ([args.bundle] if args.bundle else []) + (args.compare or [])
    try:
        batches = tuple(int(b) for b in args.batch.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--batch takes comma-separated integers; got {args.batch}") from None
    request = BenchRequest(
        tuple(paths),
        tuple(b.strip() for b in args.backend.split(",") if b.strip()),
        batches,
        runtime=cli_args.runtime_options(args),
        warmup=args.warmup,
        iters=args.iters,
        duration=args.duration,
        rounds=args.rounds,
        power=args.power,
        layers=args.layers,
        plot=not args.no_plot,
        frontier=args.frontier,
        data=args.data,
    )
    log = (
        (lambda *_: None)
        if args.json
        else (lambda msg: print(f"  {msg}", file=sys.stderr) if sys.stderr.isatty() else None)
    )
    documents = bench(request, log).document["results"]
    if args.json:
        emit_json(documents[0] if len(documents) == 1 else {"results": documents, "ratios": ratios(documents)}, "bench")
    else:
        _print(documents)
    return 0


HEADERS = ["bundle", "precision", "backend", "batch", "images/s", "p50 ms", "p90 ms", "p99 ms", "iters", "vs first",
           "peak RSS MiB"]  # fmt: skip


def _print(documents: list[dict]) -> None:
    first = {(e["backend"], e["batch"]): e["throughput"] for e in documents[0]["results"]}
    rows = []
    for doc in documents:
        name = Path(doc["bundle"]["path"]).name
        for e in doc["results"]:
            lat = e["latency_ms"]
            ratio = e["throughput"] / first[(e["backend"], e["batch"])] if (e["backend"], e["batch"]) in first else None
            rows.append([
                name, ran_as(doc["bundle"]["precision"], e.get("runtime", {})), e["backend"], e["batch"], f"{e['throughput']:.1f}",
                f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", e["iterations"],
                f"{ratio:.2f}x" if len(documents) > 1 else "-", f"{e.get('peak_rss_mib', 0):.0f}",
            ])  # fmt: skip
    print(table(HEADERS, rows))
    if len(documents) > 1:
        base = documents[0]
        labels = sorted({ran_as(base["bundle"]["precision"], e.get("runtime", {})) for e in base["results"]})
        print(
            f"vs first: throughput against {Path(base['bundle']['path']).name} ({', '.join(labels)}), same backend "
            "and batch, measured interleaved in this one run"
        )
    for doc in documents:
        for e in doc["results"]:
            for warning in e.get("warnings", []):
                print(f"warning: {Path(doc['bundle']['path']).name} on {e['backend']}, batch {e['batch']}: {warning}")
    _print_layers(documents)
    _print_machine(documents)


_SAME = {"fp32": "f32", "fp16": "f16", "int8": "int8", "int4": "int4"}


def ran_as(precision: str, runtime: dict) -> str:
    """The bundle's precision, and what the runtime really computed in where that differs (OpenVINO runs an
    "fp32" bundle in bf16 on CPUs with native bf16 unless --precision-hint f32)."""
    executed = runtime.get("executed_precision")
    if not executed or " " in executed or executed == _SAME.get(precision, precision):
        return precision
    return f"{precision} (ran {executed})"


def _print_layers(documents: list[dict]) -> None:
    """--layers: each runtime profiler's time per layer, the 25 longest."""
    for doc in documents:
        for profile in doc.get("layers", []):
            name = Path(doc["bundle"]["path"]).name
            print(f"\n{name} on {profile['backend']}, batch {profile['batch']}: time per layer")
            rows = [
                [r["layer"][:48], r["op"], r["kernel"], r["precision"], f"{r['ms']:.3f}", f"{100 * r['share']:.1f}%"]
                for r in profile["layers"][:25]
            ]
            print(table(["layer", "op", "kernel", "precision", "ms", "share"], rows))


def _print_machine(documents: list[dict]) -> None:
    executed = {
        (Path(d["bundle"]["path"]).name, e["backend"]): e["runtime"]
        for d in documents
        for e in d["results"]
        if e["backend"] == "openvino"
    }
    for (name, backend), runtime in executed.items():
        print(
            f"{name} on {backend}: weighted layers executed in {runtime.get('executed_precision')} (inference "
            f"precision hint {runtime.get('inference_precision_hint', 'unknown')}; --precision-hint f32 keeps "
            "float layers in f32)"
        )
    cpu = documents[0]["machine"]["cpu"]
    gpu = documents[0]["machine"].get("gpu")
    where = f"{cpu.get('model', '?')} ({cpu.get('usable_cores')} cores; {', '.join(cpu.get('flags', []))})"
    print(f"\nmachine: {where}" + (f"; GPU {gpu['name']}" if gpu else ""))
    for doc in documents:
        e = doc["results"][0]
        print(
            f"{Path(doc['bundle']['path']).name}: model.onnx {size(doc['bundle']['model_bytes'])}, "
            f"load {e['load_ms']:.0f} ms, first inference {e['first_inference_ms']:.1f} ms; bench.json written"
        )
