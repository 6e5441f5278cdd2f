"""Readers for each supported dataset format; each returns (images, labels, scale)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from deploy_robust import limits
from deploy_robust.errors import UserError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}


def _scale_for(x: np.ndarray) -> float:
    return 255.0 if x.dtype == np.uint8 else 1.0


def _check_npz_members(path: Path) -> None:
    """Every array's declared size against its stored bytes and the limits, before np.load allocates it."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if dtype.hasobject:
                raise UserError(
                    f"{path.name}: array {info.filename[:-4]!r} holds Python objects (pickles); "
                    "only numeric arrays are read"
                )
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            what = f"{path.name}: array {info.filename[:-4]!r} ({'x'.join(map(str, shape))} {dtype})"
            if nbytes > info.file_size:
                raise UserError(f"{what} declares {nbytes} bytes but stores {info.file_size}: truncated or corrupt")
            limits.check_declared_size(
                nbytes, info.compress_size, what, compressed=info.compress_type != zipfile.ZIP_STORED
            )


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """`x` (uint8 0..255 or float in [0, 1]) and `y`; loaded without pickle, sizes checked first."""
    try:
        _check_npz_members(path)
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "x" not in keys:
                raise UserError(f"{path.name}: no 'x' array (found: {', '.join(sorted(keys)) or 'none'})")
            if "y" not in keys:
                raise UserError(f"{path.name}: no labels: an .npz dataset needs a 'y' array next to 'x'")
            x, y = data["x"], data["y"]
    except UserError:
        raise
    except Exception as e:  # numpy and zipfile parsing untrusted bytes: any failure means an unreadable file
        # BadZipFile: truncated (the commonest case); zlib/CRC: damaged; SyntaxError/TokenError: a garbled header
        raise UserError(f"{path.name}: not a readable .npz file ({type(e).__name__}: {first_line(e)})") from None
    if x.dtype.kind not in "uif":
        raise UserError(f"{path.name}: 'x' must be numeric; got dtype {x.dtype}")
    if x.size == 0 or x.ndim < 2:
        raise UserError(f"{path.name}: the dataset is empty: 'x' holds no images (shape {x.shape})")
    if y.dtype.kind not in "uifb" or y.ndim != 1:
        raise UserError(f"{path.name}: 'y' must be a 1-D array of class indices; got {y.dtype} of shape {y.shape}")
    if x.dtype.kind in "ui" and x.dtype != np.uint8:
        x = x.astype(np.uint8) if x.min() >= 0 and x.max() <= 255 else x.astype(np.float32)
    if x.dtype.kind == "f" and x.dtype != np.float32:
        x = x.astype(np.float32)
    return x, y, _scale_for(x)


class _CheckedArray(np.ndarray):
    """An array whose pickled state must be consistent before numpy allocates anything from it:
    no object dtype, and exactly as many data bytes as the shape declares."""

    def __setstate__(self, state):
        shape, dtype, raw = (state[1], state[2], state[4]) if len(state) == 5 else (state[0], state[1], state[3])
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize if isinstance(dtype, np.dtype) else -1
        if (
            not isinstance(dtype, np.dtype)
            or dtype.hasobject
            or not isinstance(raw, (bytes, bytearray))
            or declared != len(raw)
        ):
            raise pickle.UnpicklingError("an array's declared shape and dtype do not match its stored bytes")
        super().__setstate__(state)


def _reconstruct(_cls, shape, dtype_code):
    if not isinstance(shape, tuple) or int(np.prod(shape, dtype=object)) > 1:
        raise pickle.UnpicklingError("unexpected array reconstruction")
    return np.ndarray.__new__(_CheckedArray, shape, dtype_code)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 python batches: dicts, lists, bytes and numeric numpy arrays, nothing else."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct
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
        # Unpickled from memory: a length field that claims more bytes than the file holds is then
        # "truncated", never an allocation of what it claims.
        raw = f.read_bytes()
        try:
            limits.check_pickle_memo(raw, str(f))
            batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
            data = batch.get(b"data", batch.get("data"))
            labels = batch.get(b"labels", batch.get("labels"))
            if data is None or labels is None:
                raise UserError(f"{f}: a CIFAR-10 batch needs 'data' and 'labels'")
            images = np.asarray(data)  # a plain ndarray (from _CheckedArray) or bytes/list data
            if images.dtype.kind not in "ui" or images.size == 0 or images.size % 3072:
                raise UserError(
                    f"{f}: 'data' must hold N x 3072 byte pixels; got {images.dtype} of shape {images.shape}"
                )
            xs.append(images.astype(np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, dtype=np.int64).reshape(-1))
        except UserError:
            raise
        except MemoryError:  # a length field far beyond the file: the unpickler tried to allocate it
            raise UserError(
                f"{f}: not a CIFAR-10 python batch (a length field claims more data than the "
                f"{len(raw)}-byte file holds)"
            ) from None
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            KeyError,
            IndexError,
            OverflowError,
            UnicodeError,
            LookupError,
            struct.error,
            RecursionError,
        ) as e:
            raise UserError(f"{f}: not a CIFAR-10 python batch ({type(e).__name__}: {first_line(e)})") from None
    return np.concatenate(xs), np.concatenate(ys), 255.0


def _read_idx(path: Path) -> np.ndarray:
    stored = path.stat().st_size
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = _read_bounded(f, stored, path.name)
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path.name}: cannot read idx file ({type(e).__name__}: {first_line(e)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path.name}: not an unsigned-byte idx file")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path.name}: truncated idx header ({len(raw)} bytes for {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims, dtype=object))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise UserError(f"{path.name}: truncated idx file ({body.size} of {expected} values)")
    return body.reshape(dims)


def _read_bounded(f, stored: int, name: str, chunk: int = 1 << 20) -> bytes:
    """Decompress `f` whole, stopping with a UserError once it outgrows the decompression-bomb limit."""
    parts, total = [], 0
    while block := f.read(chunk):
        total += len(block)
        limits.check_declared_size(total, stored, f"{name} (decompressed)", compressed=True)
        parts.append(block)
    return b"".join(parts)


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
                    width, height = im.size
                    if width * height > limits.MAX_IMAGE_PIXELS:
                        raise UserError(
                            f"{f}: {width}x{height} pixels is over the {limits.MAX_IMAGE_PIXELS:,}-pixel "
                            "limit for one image (classifier inputs are small; resize it)"
                        )
                    array = np.asarray(im.convert(mode), dtype=np.uint8)
            except UserError:
                raise
            except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError) as e:
                raise UserError(f"{f}: not a readable image ({type(e).__name__}: {first_line(e)})") from None
            if images and array.shape != images[0].shape:
                raise UserError(
                    f"{f}: size {array.shape[:2]} differs from {images[0].shape[:2]}; "
                    "images are not resized, give them one size"
                )
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
