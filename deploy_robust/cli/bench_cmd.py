"""deploy-robust bench: latency and throughput of bundles on real runtimes; --compare for side-by-side ratios."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy_robust.bench import run_bench, write_bench_json
from deploy_robust.bench.plots import frontier_plot, latency_plot
from deploy_robust.bundle import open_bundle
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, size, table
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.evaluate import evaluate
from deploy_robust.runtimes import BACKENDS, create_runner
from deploy_robust.verify.document import VerifySummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", help="bundle to measure")
    parser.add_argument("--compare", nargs="+", metavar="BUNDLE",
                        help="measure several bundles interleaved in one run and print ratios to the first")
    parser.add_argument("--backend", default="ort-cpu",
                        help=f"comma-separated backends: {', '.join(BACKENDS)} (default ort-cpu)")
    parser.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument("--warmup", type=cli_args.non_negative_int, default=10, help="untimed iterations before measuring (default 10)")
    parser.add_argument("--iters", type=cli_args.positive_int, help="timed iterations per batch (default: --duration)")
    parser.add_argument("--duration", type=cli_args.positive_number, default=3.0, help="seconds per batch size (default 3)")
    parser.add_argument("--rounds", type=cli_args.positive_int, help="interleaved rounds (default 1, or 3 with --compare)")
    parser.add_argument("--power", action="store_true", help="sample board power with tegrastats (Jetson)")
    parser.add_argument("--no-plot", action="store_true", help="do not write latency.png into the bundle")
    parser.add_argument("--frontier", metavar="PNG", help="write the deployment frontier plot (throughput vs accuracy)")
    parser.add_argument("--data", help="with --frontier: dataset for clean accuracy where a bundle has no verify.json")
    parser.add_argument("--layers", action="store_true",
                        help="time per layer from each runtime's own profiler (ORT profiling, OpenVINO performance "
                             "counters) at the first --batch, with the kernel and precision it ran in")
    cli_args.add_runtime_args(parser)


def run(args: argparse.Namespace) -> int:
    paths = ([args.bundle] if args.bundle else []) + (args.compare or [])
    if not paths:
        raise UserError("bench needs a bundle (or --compare B1 B2 ...)")
    bundles = [open_bundle(p) for p in paths]
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    try:
        batches = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batch takes comma-separated integers; got {args.batch}") from None
    rounds = args.rounds or (3 if len(bundles) > 1 else 1)
    accuracies = _frontier_accuracies(bundles, args.data) if args.frontier else None  # every input checked first
    log = (lambda *_: None) if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr) if sys.stderr.isatty() else None)
    documents = run_bench(bundles, backends, batches, options=cli_args.runtime_options(args), warmup=args.warmup,
                          iters=args.iters, duration=args.duration, rounds=rounds, power=args.power, layers=args.layers,
                          log=log)
    for bundle, document in zip(bundles, documents):
        write_bench_json(bundle, document)
        if not args.no_plot:
            latency_plot([document], bundle.path / "latency.png")
    if args.frontier:
        frontier_plot(_frontier_points(bundles, documents, accuracies, max(batches), backends[0]), Path(args.frontier),
                      max(batches), robust_label=accuracies["label"])
    if args.json:
        emit_json(documents[0] if len(documents) == 1 else {"results": documents, "ratios": _ratios(documents)}, "bench")
    else:
        _print(documents)
    return 0


def _ratios(documents: list[dict]) -> list[dict]:
    """Throughput of every bundle against the first, per backend and batch (what --compare prints)."""
    first = {(e["backend"], e["batch"]): e["throughput"] for e in documents[0]["results"]}
    return [{"bundle": doc["bundle"]["path"], "backend": e["backend"], "batch": e["batch"],
             "throughput_vs_first": e["throughput"] / first[(e["backend"], e["batch"])]}
            for doc in documents for e in doc["results"] if (e["backend"], e["batch"]) in first]


def _print(documents: list[dict]) -> None:
    first = {(e["backend"], e["batch"]): e["throughput"] for e in documents[0]["results"]}
    rows = []
    for doc in documents:
        name = Path(doc["bundle"]["path"]).name
        for e in doc["results"]:
            lat = e["latency_ms"]
            ratio = e["throughput"] / first[(e["backend"], e["batch"])] if (e["backend"], e["batch"]) in first else None
            rows.append([name, doc["bundle"]["precision"], e["backend"], e["batch"], f"{e['throughput']:.1f}",
                         f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", e["iterations"],
                         f"{ratio:.2f}x" if len(documents) > 1 else "-", f"{e.get('peak_rss_mib', 0):.0f}"])
    print(table(["bundle", "precision", "backend", "batch", "images/s", "p50 ms", "p90 ms", "p99 ms", "iters",
                 "vs first", "peak RSS MiB"], rows))
    for doc in documents:
        for profile in doc.get("layers", []):
            print(f"\n{Path(doc['bundle']['path']).name} on {profile['backend']}, batch {profile['batch']}: time per layer")
            print(table(["layer", "op", "kernel", "precision", "ms", "share"],
                        [[r["layer"][:48], r["op"], r["kernel"], r["precision"], f"{r['ms']:.3f}", f"{100 * r['share']:.1f}%"]
                         for r in profile["layers"][:25]]))
    executed = {(Path(d["bundle"]["path"]).name, e["backend"]): e["runtime"].get("executed_precision")
                for d in documents for e in d["results"] if e["backend"] == "openvino"}
    for (name, backend), precision in executed.items():
        print(f"{name} on {backend}: weighted layers executed in {precision}")
    cpu = documents[0]["machine"]["cpu"]
    gpu = documents[0]["machine"].get("gpu")
    where = f"{cpu.get('model', '?')} ({cpu.get('usable_cores')} cores; {', '.join(cpu.get('flags', []))})"
    print(f"\nmachine: {where}" + (f"; GPU {gpu['name']}" if gpu else ""))
    for doc in documents:
        e = doc["results"][0]
        print(f"{Path(doc['bundle']['path']).name}: model.onnx {size(doc['bundle']['model_bytes'])}, "
              f"load {e['load_ms']:.0f} ms, first inference {e['first_inference_ms']:.1f} ms; bench.json written")


def _frontier_accuracies(bundles, data) -> dict:
    """Clean (and robust) accuracy per bundle for the frontier, checked before anything is measured: robust
    figures only from verify.json files made under one threat model and sample, clean ones from --data."""
    verified = {b.path: VerifySummary.read(b.path / "verify.json") for b in bundles if (b.path / "verify.json").is_file()}
    if len({v.setting for v in verified.values()}) > 1:
        described = "; ".join(f"{p.name}: {v.threat}, n={v.n}, suite {v.suite}" for p, v in verified.items())
        raise UserError(f"--frontier: the bundles were verified under different settings ({described}); verify them "
                        "under one threat model and sample so their robust accuracies share an axis")
    missing = [b for b in bundles if b.path not in verified]
    if missing and not data:
        raise UserError(f"--frontier needs accuracies: {missing[0].path} has no verify.json; pass --data")
    points: dict = {}
    datasets: dict = {}
    for bundle in missing:
        if bundle.spec.shape not in datasets:
            try:
                datasets[bundle.spec.shape] = load_dataset(data, bundle.spec.shape)
            except UserError as e:
                raise UserError(f"--frontier --data for {bundle.path.name}: {e}") from None
    for bundle in bundles:
        if bundle.path in verified:
            v = verified[bundle.path]
            points[bundle.path] = {"clean_accuracy": v.clean_accuracy, "robust_accuracy": v.robust_accuracy,
                                   "robust_ci95": list(v.robust_ci95)}
        else:
            points[bundle.path] = {"clean_accuracy": evaluate(create_runner("ort-cpu", bundle),
                                                              datasets[bundle.spec.shape]).accuracy}
    label = None
    if verified:
        v = next(iter(verified.values()))
        label = f"robust (verify: {v.threat}, n={v.n}, 95% CI)"
    return {"points": points, "label": label}


def _frontier_points(bundles, documents, accuracies, batch, backend) -> list[dict]:
    points = []
    for bundle, doc in zip(bundles, documents):
        point = {"name": bundle.path.name, "throughput": next(
            e["throughput"] for e in doc["results"] if e["batch"] == batch and e["backend"] == backend)}
        points.append(point | accuracies["points"][bundle.path])
    return points
