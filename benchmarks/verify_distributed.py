"""Distributed verify on one machine: 2 processes x 1 thread against 1 process x 1 thread, and the cost per image
from 1,000 to 10,000 MNIST points.

The FP32 bundle of mnist_cnn_a_adv (../shared/data), L-inf eps 0.3, the whole `deploy-robust verify` command
(attacks, the eps sweep, the report) timed from outside, start-up included. The 1- and 2-process runs alternate,
`--rounds` times each, and the ratio is taken of their medians; every run's verify.json must give the same
figures (checked). Then the same 2-process verify on 10,000 points.

    python benchmarks/verify_distributed.py [--suite quick] [--rounds 2] [--large 10000]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED  # noqa: E402
from machine import save_result  # noqa: E402

MODEL = SHARED / "models" / "mnist_cnn_a_adv.model"
DATA = SHARED / "datasets" / "mnist_test.npz"
HOW_IT_RAN = ("seconds", "seconds_total", "stage_seconds", "resume", "processes", "command")


def verify(bundle: Path, n: int, suite: str, workers: int) -> tuple[float, dict]:
    command = [sys.executable, "-m", "deploy_robust", "verify", str(bundle), "--data", str(DATA), "--eps", "0.3",
               "--n", str(n), "--suite", suite, "--threads", "1", "--attack-layout", "contiguous", "--no-resume",
               "--json", *(["--workers", str(workers)] if workers > 1 else [])]
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
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not MODEL.exists():
        sys.exit("needs ../shared/data")
    root = Path(tempfile.mkdtemp(prefix="verify-distributed-"))
    bundle = root / "mnist-fp32"
    subprocess.run([sys.executable, "-m", "deploy_robust", "export", str(MODEL), "-o", str(bundle)], check=True,
                   capture_output=True)
    times: dict[int, list[float]] = {1: [], 2: []}
    docs = {}
    for round_ in range(args.rounds):
        for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
            seconds, doc = verify(bundle, args.n, args.suite, workers)
            times[workers].append(seconds)
            docs.setdefault(workers, doc)
            if found(doc) != found(docs[1] if 1 in docs else doc):
                sys.exit(f"{workers} processes found something else than 1 process")
            print(f"n {args.n}, {workers} process(es) x 1 thread: {seconds:.1f} s "
                  f"(robust {100 * doc['robust_accuracy']:.1f}%)", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    result = {"model": MODEL.name, "eps": 0.3, "suite": args.suite, "n": args.n, "threads_per_process": 1,
              "seconds_1_process": times[1], "seconds_2_processes": times[2], "speedup_2_vs_1": round(one / two, 3),
              "robust_accuracy": docs[1]["robust_accuracy"], "identical_figures": True,
              "per_image_ms_1_process": round(1e3 * one / args.n, 2),
              "per_image_ms_2_processes": {args.n: round(1e3 * two / args.n, 2)}}
    print(f"speed-up 2 vs 1 process: {one / two:.2f}x", flush=True)
    if args.large:
        seconds, doc = verify(bundle, args.large, args.suite, 2)
        result["per_image_ms_2_processes"][args.large] = round(1e3 * seconds / args.large, 2)
        result[f"seconds_2_processes_n{args.large}"] = round(seconds, 1)
        result[f"robust_accuracy_n{args.large}"] = doc["robust_accuracy"]
        print(f"n {args.large}, 2 processes: {seconds:.1f} s ({1e3 * seconds / args.large:.2f} ms per image; "
              f"{result['per_image_ms_2_processes'][args.n]:.2f} at n {args.n})", flush=True)
    save_result("verify_distributed", result)


if __name__ == "__main__":
    main()
