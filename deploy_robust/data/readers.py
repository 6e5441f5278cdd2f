"""Readers for each supported dataset format; each returns (images, labels, scale)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from deploy_robust.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}


def _scale_for(x: np.ndarray) -> float:
    return 255.0 if x.dtype == np.uint8 else 1.0


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """`x` (uint8 0..255 or float in [0, 1]) and `y`; loaded without pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "x" not in keys:
                raise UserError(f"{path.name}: no 'x' array (found: {', '.join(sorted(keys)) or 'none'})")
            if "y" not in keys:
                raise UserError(f"{path.name}: no labels: an .npz dataset needs a 'y' array next to 'x'")
            x, y = data["x"], data["y"]
    except UserError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path.name}: not a readable .npz file ({e})") from None
    if x.dtype.kind not in "uif":
        raise UserError(f"{path.name}: 'x' must be numeric; got dtype {x.dtype}")
    if x.dtype.kind in "ui" and x.dtype != np.uint8:
        x = x.astype(np.uint8) if x.min() >= 0 and x.max() <= 255 else x.astype(np.float32)
    if x.dtype.kind == "f" and x.dtype != np.float32:
        x = x.astype(np.float32)
    return x, y, _scale_for(x)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 python batches: dicts, lists, bytes and numpy arrays, nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_dir(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    files = [path / "test_batch"] if split == "test" else sorted(path.glob("data_batch_*"))
    files = [f for f in files if f.is_file()]
    if not files:
        raise UserError(f"{path}: no CIFAR-10 {'test_batch' if split == 'test' else 'data_batch_*'} file")
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise UserError(f"{f}: not a CIFAR-10 python batch ({e})") from None
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise UserError(f"{f}: a CIFAR-10 batch needs 'data' and 'labels'")
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels))
    return np.concatenate(xs), np.concatenate(ys), 255.0


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path.name}: cannot read idx file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path.name}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = int(np.prod(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise UserError(f"{path.name}: truncated idx file ({body.size} of {expected} values)")
    return body.reshape(dims)


def is_idx(path: Path) -> bool:
    return "idx" in path.name and "ubyte" in path.name


def read_mnist(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    """An images idx file (labels found beside it), or a directory holding the idx files."""
    if path.is_dir():
        prefix = "t10k" if split == "test" else "train"
        found = sorted(path.glob(f"{prefix}-images*idx3-ubyte*"))
        if not found:
            raise UserError(f"{path}: no {prefix}-images-idx3-ubyte file")
        path = found[0]
    label_path = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if not label_path.exists():
        raise UserError(f"{path.name}: no labels: expected {label_path.name} beside it")
    x, y = _read_idx(path), _read_idx(label_path)
    return x, y, 255.0


def read_image_folder(path: Path, channels: int | None) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """root/<class>/<image>: classes sorted by name; images must all have one size (no resizing)."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading an image folder needs Pillow: pip install pillow") from None
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{path}: an image folder needs one sub-folder per class")
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for index, cls in enumerate(classes):
        for f in sorted((path / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    array = np.asarray(im.convert(mode), dtype=np.uint8)
            except OSError as e:
                raise UserError(f"{f}: not a readable image ({e})") from None
            if images and array.shape != images[0].shape:
                raise UserError(f"{f}: size {array.shape[:2]} differs from {images[0].shape[:2]}; "
                                "images are not resized, give them one size")
            images.append(array)
            labels.append(index)
    if not images:
        raise UserError(f"{path}: the image folder holds no images")
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels), 255.0, classes


def read_digits(split: str) -> tuple[np.ndarray, np.ndarray, float]:
    """scikit-learn's built-in 8x8 digits (values 0..16): a fixed 80/20 split, no download."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    cut = int(0.8 * len(order))
    chosen = order[:cut] if split == "train" else order[cut:]
    x = digits.images[chosen].astype(np.uint8)[:, None]
    return x, digits.target[chosen], 16.0
