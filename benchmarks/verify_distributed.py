"""Distributed verify on one machine: 2 processes x 1 thread against 1 process x 1 thread, and the cost per image
from 1,000 to 10,000 MNIST points.

The FP32 bundle of mnist_cnn_a_adv (../shared/data), L-inf eps 0.3. Each `deploy-robust verify` command
(attacks, the eps sweep, the report) is timed from outside, start-up included ("wall"), and from inside
(verify.json's seconds_total: the run after the imports, about 4 s of Python per process here). The speed-up
runs use verify's default suite; every run's verify.json must give the same figures (checked). Then the cost
per image with 2 processes at 1,000 and 10,000 points (the quick suite, to keep the 10,000 in minutes).

    python benchmarks/verify_distributed.py [--suite standard] [--rounds 1] [--flat-suite quick] [--large 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from common import SHARED
from machine import save_result

MODEL = SHARED / "models" / "mnist_cnn_a_adv.model"
DATA = SHARED / "datasets" / "mnist_test.npz"
HOW_IT_RAN = ("seconds", "seconds_total", "stage_seconds", "resume", "processes", "command", "throughput",
              "seconds_since_launch")  # fmt: skip


def verify(bundle: Path, n: int, suite: str, workers: int, batch: int = 128) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "deploy_robust",
        "verify",
        str(bundle),
        "--data",
        str(DATA),
        "--eps",
        "0.3",
        "--n",
        str(n),
        "--suite",
        suite,
        "--batch-size",
        str(batch),
        "--threads",
        "1",
        "--attack-layout",
        "contiguous",
        "--no-resume",
        "--json",
        *(["--workers", str(workers)] if workers > 1 else []),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, CI="1"))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr)
    return seconds, json.loads(done.stdout)


def found(doc: dict) -> dict:
    out = {k: v for k, v in doc.items() if k not in HOW_IT_RAN}
    out["attacks"] = [{k: v for k, v in a.items() if k != "seconds"} for a in doc["attacks"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="standard", help="suite of the speed-up runs (verify's default)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128, help="verify's batch: the unit of work a rank takes")
    parser.add_argument("--flat-suite", default="quick", help="suite of the cost-per-image runs")
    parser.add_argument("--large", type=int, default=10000)
    args = parser.parse_args()
    if not MODEL.exists():
        sys.exit("needs ../shared/data")
    root = Path(tempfile.mkdtemp(prefix="verify-distributed-"))
    bundle = root / "mnist-fp32"
    subprocess.run(
        [sys.executable, "-m", "deploy_robust", "export", str(MODEL), "-o", str(bundle)],
        check=True,
        capture_output=True,
    )
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for round_ in range(args.rounds):
        for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
            seconds, doc = verify(bundle, args.n, args.suite, workers, args.batch_size)
            runs[workers].append(
                {
                    "wall_seconds": round(seconds, 1),
                    "verify_seconds": doc["seconds_total"],
                    "robust_accuracy": doc["robust_accuracy"],
                    "found": found(doc),
                }
            )
            print(
                f"n {args.n} {args.suite}, {workers} process(es) x 1 thread: {seconds:.1f} s wall, "
                f"{doc['seconds_total']:.1f} s in verify (robust {100 * doc['robust_accuracy']:.1f}%)",
                flush=True,
            )
    if any(r["found"] != runs[1][0]["found"] for r in runs[1] + runs[2]):
        sys.exit("2 processes found something else than 1 process")
    median = lambda w, key: statistics.median(r[key] for r in runs[w])  # noqa: E731
    result = {
        "model": MODEL.name,
        "eps": 0.3,
        "suite": args.suite,
        "n": args.n,
        "threads_per_process": 1,
        "batch_size": args.batch_size,
        "runs": {w: [{k: v for k, v in r.items() if k != "found"} for r in rs] for w, rs in runs.items()},
        "speedup_wall": round(median(1, "wall_seconds") / median(2, "wall_seconds"), 3),
        "speedup_in_verify": round(median(1, "verify_seconds") / median(2, "verify_seconds"), 3),
        "identical_figures": True,
        "flat": {"suite": args.flat_suite, "processes": 2, "sizes": {}},
    }
    print(
        f"speed-up 2 vs 1 process: {result['speedup_wall']:.2f}x wall, {result['speedup_in_verify']:.2f}x in verify",
        flush=True,
    )
    for n in (args.n, args.large) if args.large else ():
        seconds, doc = verify(bundle, n, args.flat_suite, 2)
        result["flat"]["sizes"][n] = {
            "wall_seconds": round(seconds, 1),
            "verify_seconds": doc["seconds_total"],
            "wall_ms_per_image": round(1e3 * seconds / n, 2),
            "verify_ms_per_image": round(1e3 * doc["seconds_total"] / n, 2),
            "robust_accuracy": doc["robust_accuracy"],
        }
        print(
            f"n {n} {args.flat_suite}, 2 processes: {seconds:.1f} s wall ({1e3 * seconds / n:.2f} ms per image; "
            f"{1e3 * doc['seconds_total'] / n:.2f} in verify)",
            flush=True,
        )
    save_result("verify_distributed" if args.batch_size == 128 else f"verify_distributed_b{args.batch_size}", result)


if __name__ == "__main__":
    main()
