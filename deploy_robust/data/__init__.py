"""One loader for calibration, evaluation, training and verification.

`load_dataset(source)` reads an `.npz` (`x`, `y`), a CIFAR-10 python batches directory,
MNIST idx(.gz) files, an image-folder tree, or `digits` (scikit-learn's built-in set,
`digits:train` / `digits:test`), and returns a `Dataset` that serves float32 [0, 1]
N,C,H,W batches.
"""

from __future__ import annotations

from pathlib import Path

from deploy_robust.data.dataset import Dataset
from deploy_robust.data.layout import to_nchw
from deploy_robust.data import readers
from deploy_robust.errors import UserError

__all__ = ["Dataset", "load_dataset"]


def load_dataset(
    source: str | Path, expect_shape: tuple[int, int, int] | None = None, split: str = "test", limit: int | None = None
) -> Dataset:
    """Read `source`; `expect_shape` (C,H,W) fixes the layout and rejects images that do not fit."""
    text = str(source)
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test'; got {split}")
    if text in ("digits", "digits:train", "digits:test"):
        split = text.split(":")[1] if ":" in text else split
        x, y, scale = readers.read_digits(split)
        name = f"digits:{split}"
    else:
        path = Path(source)
        name = path.name
        if not path.exists():
            raise UserError(f"dataset not found: {path}")
        if path.suffix == ".npz":
            x, y, scale = readers.read_npz(path)
        elif path.is_dir() and ((path / "test_batch").exists() or any(path.glob("data_batch_*"))):
            x, y, scale = readers.read_cifar_dir(path, split)
        elif readers.is_idx(path) or (path.is_dir() and any(path.glob("*idx3-ubyte*"))):
            x, y, scale = readers.read_mnist(path, split)
        elif path.is_dir():
            x, y, scale, _ = readers.read_image_folder(path, expect_shape[0] if expect_shape else None)
        else:
            raise UserError(
                f"{path}: unknown dataset format (expected .npz, a CIFAR-10 batches folder, "
                "MNIST idx files, an image folder, or 'digits')"
            )
    images = to_nchw(x, name, expect_shape)
    return Dataset(images, y, name, scale).take(limit)
