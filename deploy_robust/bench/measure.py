"""Timing one runner at one batch size: warm-up excluded, rotated inputs, percentiles, peak memory.

Latency is wall-clock time of `runner.infer` on host arrays, so it includes host<->device
transfers on a GPU; runners that can split it (`Runner.phases`) also report transfer and
device-compute times measured with device events, as trtexec does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.runtimes.base import Runner


@dataclass
class BatchResult:
    backend: str
    batch: int
    iterations: int
    seconds: float
    throughput: float                       # images per second
    latency_ms: dict[str, float]            # p50, p90, p99, mean, min, max, std
    peak_rss_mib: float | None = None
    peak_device_mib: float | None = None
    phases_ms: dict[str, float] | None = None  # h2d / compute / d2h medians, where the runner can split them
    power: dict[str, float] | None = None      # Jetson: average watts and images per joule
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("latencies_ms")
        return {k: v for k, v in doc.items() if v is not None}


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()), "std": float(a.std())}


def make_inputs(shape: tuple[int, ...], batch: int, buffers: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Several distinct input buffers, rotated so caches and branch predictors do not flatter."""
    rng = np.random.default_rng(seed)
    return [rng.random((batch, *shape), dtype=np.float32) for _ in range(buffers)]


def measure(runner: Runner, shape: tuple[int, ...], batch: int, *, warmup: int = 10, iters: int | None = None,
            duration: float = 3.0, min_iters: int = 20, buffers: int = 4, seed: int = 0,
            power_sampler=None) -> BatchResult:
    """Run `warmup` untimed iterations, then time until `iters` (if given) or `duration` seconds
    (and at least `min_iters` iterations)."""
    inputs = make_inputs(shape, batch, buffers, seed)
    runner.activate()
    for i in range(warmup):
        runner.infer(inputs[i % buffers])
    reset_peak_rss()
    device_peak = getattr(runner, "reset_device_peak", None)
    if device_peak:
        device_peak()
    if power_sampler:
        power_sampler.start()
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        x = inputs[len(samples) % buffers]
        t0 = time.perf_counter_ns()
        runner.infer(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        done = len(samples)
        if iters is not None:
            if done >= iters:
                break
        elif time.perf_counter() - start >= duration and done >= min_iters:
            break
    seconds = time.perf_counter() - start
    power = power_sampler.stop() if power_sampler else None
    throughput = batch * len(samples) / (sum(samples) / 1e3)
    result = BatchResult(runner.name, batch, len(samples), seconds, throughput, latency_stats(samples),
                         peak_rss_mib=peak_rss_mib(), latencies_ms=samples)
    if getattr(runner, "device_peak_mib", None):
        result.peak_device_mib = runner.device_peak_mib()
    phases = getattr(runner, "phases", None)
    if phases is not None:
        timings = [phases(inputs[i % buffers]) for i in range(min(20, len(samples)))]
        if timings and timings[0]:
            result.phases_ms = {k: float(np.median([t[k] for t in timings])) for k in timings[0]}
    if power and power.get("watts"):
        power["images_per_joule"] = throughput / power["watts"]
        result.power = power
    return result


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux: VmHWM), so each measurement reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
