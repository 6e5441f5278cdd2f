"""Bundles the benchmark scripts share: ResNet-18 (random init) and the real checkpoints of ../shared/data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from deploy_robust import zoo
from deploy_robust.data import Dataset, load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel, load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_CALIB = SHARED / "datasets" / "cifar10_train_first1017_per_batch.npz"
MNIST_CALIB = SHARED / "datasets" / "mnist_train_first17435.npz"


def checkpoint_slug(checkpoint: str) -> str:
    """A checkpoint's name as results names spell it: "pyautoattack-resnet18" -> "pyautoattack_resnet18",
    "resnet18_cifar_fgsm.pt" -> "resnet18_cifar_fgsm"."""
    return checkpoint.split(".")[0].replace("-", "_")


def resnet18_random() -> LoadedModel:
    """ResNet-18 (CIFAR) with a fixed random initialization: speed does not depend on trained values."""
    entry = zoo.get("resnet18")
    torch.manual_seed(0)
    return LoadedModel(
        entry.build().eval(),
        entry.train_spec,
        {"file": "resnet18-random-init", "format": "zoo", "sha256": "", "arch": "resnet18", "layer_dtypes": {}},
    )


def calibration_for(loaded: LoadedModel, n: int = 256) -> Dataset:
    path = MNIST_CALIB if loaded.spec.shape[0] == 1 else CIFAR_CALIB
    if path.exists():
        return load_dataset(path, loaded.spec.shape).take(n)
    rng = np.random.default_rng(0)
    return Dataset(
        rng.integers(0, 256, (n, *loaded.spec.shape), dtype=np.uint8), rng.integers(0, 10, n), "random", 255.0
    )


def shared_model(name: str) -> LoadedModel | None:
    path = SHARED / "models" / name
    return load_model(path) if path.exists() else None


def export_variants(loaded: LoadedModel, root: Path, variants: list[tuple[str, str]]) -> dict[str, object]:
    """{'int8/ort-cpu': Bundle, ...} for each (precision, target)."""
    calib = calibration_for(loaded)
    out = {}
    for precision, target in variants:
        name = f"{precision}-{target}"
        out[f"{precision}/{target}"] = export_bundle(loaded, root / name, ExportOptions(precision, target), calib=calib)
    return out


def throughput(runner, batch: int, seconds: float, shape: tuple[int, ...] = (3, 32, 32)) -> float:
    """Images per second of `runner` on random batches, after a warm-up, for about `seconds`."""
    inputs = [np.random.default_rng(i).random((batch, *shape), dtype=np.float32) for i in range(4)]
    for x in inputs:  # warm-up
        runner.infer(x)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner.infer(inputs[done % len(inputs)])
        done += 1
    return done * batch / (time.perf_counter() - start)


def interleaved_throughput(
    runners: dict[str, object], batches: list[int], rounds: int, seconds: float, shape: tuple[int, ...] = (3, 32, 32)
) -> list[dict]:
    """Every runner measured round by round (a noisy neighbour slows all alike): one row per
    (variant, batch) with the median over rounds and the rounds themselves."""
    results = []
    for batch in batches:
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, runner in runners.items():
                samples[name].append(throughput(runner, batch, seconds, shape))
        for name, values in samples.items():
            results.append(
                {
                    "variant": name,
                    "batch": batch,
                    "throughput_median": float(np.median(values)),
                    "throughput_rounds": values,
                }
            )
    return results
