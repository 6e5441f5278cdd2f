"""Benchmarks of bundles on real runtimes: latency percentiles, throughput, memory, machine info."""

from deploy_robust.bench.harness import SCHEMA, SCHEMA_VERSION, run_bench, write_bench_json

__all__ = ["SCHEMA", "SCHEMA_VERSION", "run_bench", "write_bench_json"]
