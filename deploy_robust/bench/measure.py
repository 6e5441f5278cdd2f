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
    stability: dict[str, Any] | None = None    # what the stop rule saw, and the spread between rounds
    warnings: list[str] = field(default_factory=list)  # what says the figure should not be trusted as it is
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("latencies_ms")
        return {k: v for k, v in doc.items() if v is not None}


# The stop rule, as benchmark tools use one: past --duration and the minimum iterations, keep timing while the
# mean latency's relative standard error is above SETTLED (1%), up to CAP_FACTOR x --duration.
SETTLED = 0.01
CAP_FACTOR = 3.0
NOISY_TAIL = 2.0     # p99 above this multiple of p50: a noisy machine (or a runtime with bimodal latency)
NOISY_ROUNDS = 0.10  # rounds' throughputs further apart than this fraction of their median


def _relative_sem_of_sums(total: float, total_sq: float, n: int) -> float:
    """The mean's standard error over the mean, from the running sums of the samples and of their squares."""
    if n < 2 or total <= 0:
        return 0.0
    mean = total / n
    return (max(total_sq - n * mean**2, 0.0) / (n - 1) / n) ** 0.5 / mean


def _relative_sem(samples: list[float]) -> float:
    a = np.asarray(samples, dtype=np.float64)
    return _relative_sem_of_sums(float(a.sum()), float((a**2).sum()), len(a))


def stability_of(samples: list[float], stopped_by: str, round_throughputs: list[float] | None = None):
    """The stop rule's figures and the warnings they call for."""
    stats = latency_stats(samples)
    sem = _relative_sem(samples)
    stability: dict[str, Any] = {"stopped_by": stopped_by, "relative_sem_pct": round(100 * sem, 2),
                                 "p99_over_p50": round(stats["p99"] / stats["p50"], 2) if stats["p50"] else None}  # fmt: skip
    warnings = []
    if stability["p99_over_p50"] and stability["p99_over_p50"] > NOISY_TAIL:
        warnings.append(f"p99 is {stability['p99_over_p50']:.1f}x p50: the machine was noisy (another process, "
                        "frequency scaling) or the runtime stalls at times; rerun, or raise --duration")  # fmt: skip
    if sem > SETTLED:
        warnings.append(f"the mean latency did not settle within 1% (standard error {100 * sem:.1f}%) in "
                        f"{len(samples)} iterations; raise --duration")  # fmt: skip
    if round_throughputs and len(round_throughputs) > 1:
        median = float(np.median(round_throughputs))
        spread = (max(round_throughputs) - min(round_throughputs)) / median if median else 0.0
        stability["round_spread_pct"] = round(100 * spread, 1)
        if spread > NOISY_ROUNDS:
            warnings.append(f"its {len(round_throughputs)} rounds differ by {100 * spread:.0f}% in throughput: the "
                            "machine's speed changed during the run; compare ratios from one run only")  # fmt: skip
    return stability, warnings


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
    """Run `warmup` untimed iterations, then time `iters` iterations (if given), or at least `duration` seconds
    and `min_iters` iterations and then until the mean settles (SETTLED), at most CAP_FACTOR x `duration`."""
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
    total = total_sq = 0.0  # running sums: the stop rule's standard error in O(1) per iteration
    start = time.perf_counter()
    while True:
        x = inputs[len(samples) % buffers]
        t0 = time.perf_counter_ns()
        runner.infer(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        total, total_sq = total + samples[-1], total_sq + samples[-1] ** 2
        done = len(samples)
        if iters is not None:
            if done >= iters:
                stopped_by = "iterations"
                break
            continue
        elapsed = time.perf_counter() - start
        if elapsed >= duration and done >= min_iters:
            if _relative_sem_of_sums(total, total_sq, done) <= SETTLED:
                stopped_by = "settled"
                break
            if elapsed >= CAP_FACTOR * duration:
                stopped_by = "time cap"
                break
    seconds = time.perf_counter() - start
    power = power_sampler.stop() if power_sampler else None
    throughput = batch * len(samples) / (sum(samples) / 1e3)
    stability, warnings = stability_of(samples, stopped_by)
    result = BatchResult(runner.name, batch, len(samples), seconds, throughput, latency_stats(samples),
                         peak_rss_mib=peak_rss_mib(), stability=stability, warnings=warnings, latencies_ms=samples)
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
