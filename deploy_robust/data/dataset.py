"""Dataset: labelled images kept in their stored dtype, served as float32 [0, 1] NCHW batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from deploy_robust.errors import UserError


@dataclass
class Dataset:
    """`images` is (N, C, H, W), uint8 (scaled by `scale`, e.g. 255) or float already in [0, 1]."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise UserError(f"{self.name}: images must be N,C,H,W after layout handling; got shape {self.images.shape}")
        if len(self.images) == 0:
            raise UserError(f"{self.name}: the dataset is empty")
        if self.labels is None:
            raise UserError(f"{self.name}: the dataset has no labels")
        self.labels = np.asarray(self.labels).reshape(-1)
        if len(self.labels) != len(self.images):
            raise UserError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if self.labels.dtype.kind not in "iu":
            if (
                self.labels.dtype.kind == "f"
                and np.all(np.isfinite(self.labels))
                and np.all(self.labels == np.round(self.labels))
            ):
                self.labels = self.labels.astype(np.int64)
            else:
                raise UserError(f"{self.name}: labels must be integer class indices; got dtype {self.labels.dtype}")
        self.labels = self.labels.astype(np.int64)
        if self.labels.min() < 0:
            raise UserError(f"{self.name}: labels must be >= 0; found {int(self.labels.min())}")
        if self.images.dtype.kind == "f":
            _check_float_images(self.images, self.name, self.scale)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def check_labels(self, num_classes: int, against: str) -> None:
        """Every label must be a class of the model that will be scored on them."""
        top = int(self.labels.max())
        if top >= num_classes:
            raise UserError(
                f"{self.name}: label {top} is out of range for {against}, which has {num_classes} "
                f"classes (labels 0..{num_classes - 1})"
            )

    def take(self, n: int | None) -> "Dataset":
        """The first `n` images (all when n is None or larger than the set)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise UserError(f"--n must be positive; got {n}")
        return Dataset(self.images[:n], self.labels[:n], self.name, self.scale)

    def subset(self, indices: np.ndarray) -> "Dataset":
        """The images at `indices`, in that order."""
        return Dataset(self.images[indices], self.labels[indices], self.name, self.scale)

    def skip(self, n: int) -> "Dataset | None":
        """The images after the first `n` (None when there are none)."""
        if n >= len(self):
            return None
        return Dataset(self.images[n:], self.labels[n:], self.name, self.scale)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            x = self.images[start : start + batch_size]
            yield (x.astype(np.float32) / np.float32(self.scale)), self.labels[start : start + batch_size]

    def as_float(self) -> np.ndarray:
        """All images as float32 in [0, 1] (materializes the whole set)."""
        return self.images.astype(np.float32) / np.float32(self.scale)


def _check_float_images(images: np.ndarray, name: str, scale: float, chunk: int = 4096) -> None:
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        finite = np.isfinite(block)
        if not finite.all():
            bad = start + int(np.argwhere(~finite.reshape(len(block), -1).all(axis=1))[0, 0])
            raise UserError(f"{name}: image {bad} contains NaN or Inf values")
        lo, hi = float(block.min()), float(block.max())
        if lo < 0 or hi > scale * (1 + 1e-6):
            hint = " (values look like 0..255: store uint8, or divide by 255)" if hi > 1.5 and hi <= 255 else ""
            raise UserError(f"{name}: float images must lie in [0, 1]; found values in [{lo:g}, {hi:g}]{hint}")
