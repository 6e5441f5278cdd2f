"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent) and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker gets its share of the cores: torch, and through OMP_NUM_THREADS the CLI
    processes tests start, use cores / workers threads, so two workers do not oversubscribe two cores."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A file made once per test run and shared by every pytest-xdist worker (the first to take the lock
    builds it, into a temporary name, then renames it): for trained models that several workers need."""
    import os

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder, above each worker's
    path = root / name
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            build(partial)
            partial.rename(path)
    return path


def tiny_bundle(tmp_path_factory, dest: Path, precision: str = "fp32"):
    """The tiny CNN's bundle at `precision`, exported once per test run (shared by the xdist workers: an export
    costs seconds, a copy milliseconds) and copied to `dest`, so a test that writes into its bundle (bench.json,
    reports) writes into its own."""
    import shutil

    from deploy_robust.bundle import open_bundle
    from deploy_robust.export import ExportOptions, export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.spec import InputSpec

    def export(path: Path) -> None:
        source = {"file": "t", "format": "test", "sha256": "", "arch": None, "layer_dtypes": {}}
        export_bundle(LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), source), path, ExportOptions(precision))

    shutil.copytree(built_once(tmp_path_factory, f"tiny-bundle-{precision}", export), dest)
    return open_bundle(dest)


@pytest.fixture
def tiny_bundles(tmp_path_factory, tmp_path):
    """The tiny CNN's FP32 and FP16 bundles, this test's own copies."""
    return [tiny_bundle(tmp_path_factory, tmp_path / p, p) for p in ("fp32", "fp16")]


def shared_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data ({'/'.join(parts)} not found); real-data tests run where it is present")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_resume_key(tmp_path_factory):
    """verify's resume HMAC key lives in a test directory, not the user's ~/.cache."""
    import os

    home = tmp_path_factory.mktemp("deploy-robust-home")
    previous = os.environ.get("DEPLOY_ROBUST_HOME")
    os.environ["DEPLOY_ROBUST_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DEPLOY_ROBUST_HOME", None)
    else:
        os.environ["DEPLOY_ROBUST_HOME"] = previous


@pytest.fixture
def shared():
    return shared_path


class TinyNet(nn.Module):
    """A small CNN with BN and a residual add: enough structure to exercise export and ingestion."""

    def __init__(self, channels: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = torch.relu(h + self.conv2(h))
        return self.fc(torch.flatten(self.pool(h), 1))


def make_tiny(channels: int = 3, num_classes: int = 5, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet(channels, num_classes)
    with torch.no_grad():  # non-trivial BN statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def tiny_model() -> TinyNet:
    return make_tiny()


@pytest.fixture
def tiny_arch_file(tmp_path: Path) -> str:
    """A user architecture file, as `--arch file.py:factory` names it."""
    source = Path(__file__).with_name("conftest.py").read_text()
    start = source.index("class TinyNet")
    end = source.index("def make_tiny")
    path = tmp_path / "user_arch.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n"
        + source[start:end]
        + "\ndef build(num_classes=5):\n    return TinyNet(3, num_classes)\n"
    )
    return f"{path}:build"


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_model: TinyNet) -> Path:
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": tiny_model.state_dict(), "epoch": 3}, path)
    return path


@pytest.fixture
def image_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, x=rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8), y=rng.integers(0, 5, 40))
    return path


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""

    def run(*args: str):
        code = cli_main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    """A digits_cnn state_dict trained for a few seconds: a real model to defend, rewrite and export."""
    from deploy_robust import zoo
    from deploy_robust.data import load_dataset
    from deploy_robust.seeding import seed_everything
    from deploy_robust.train import train_classifier

    def build(path: Path) -> None:
        seed_everything(0)
        model = zoo.get("digits_cnn").build()
        train_classifier(model, load_dataset("digits:train"), epochs=10, seed=0)
        torch.save(model.state_dict(), path)

    return built_once(tmp_path_factory, "digits.pt", build)


@pytest.fixture(scope="session")
def _digits_fp32_master(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "digits-fp32"
    assert (
        cli_main(["export", str(digits_checkpoint), "--arch", "digits_cnn", "--precision", "fp32", "-o", str(out)]) == 0
    )
    return out


@pytest.fixture
def digits_bundle(_digits_fp32_master, tmp_path):
    """A fresh copy of the digits_cnn FP32 bundle (exported once per session), for a test to write into."""
    import shutil

    return Path(shutil.copytree(_digits_fp32_master, tmp_path / "digits-fp32"))
