"""Load a TorchScript archive after checking, from its bytes, what TorchScript's C++ loader would trust.

`torch.jit.load` unpickles `data.pkl` and `constants.pkl` (and, when an error's source is shown,
the `.debug_pkl` records) with TorchScript's own C++ unpickler. Two things in those pickles are
taken on faith there:

- the memo index a PUT names: the memo is sized by the largest one, so `LONG_BINPUT 2**28` in the
  `data.pkl` of a 137 KB archive took `info` to a 4.3 GiB peak;
- the element count each storage declares: a storage is built over its record (`data/3`) at the
  declared size whatever the record holds, so a bias record cut to 0 bytes under a declared 10
  floats loads, and the first forward pass reads past the buffer (a segmentation fault).

Both are checked here first: every pickled record's opcodes are walked without running them, and
each storage's declared bytes are compared with its record's (the pickle is read by an unpickler
whose classes are inert placeholders, so nothing the file names is imported or called).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from deploy_robust import limits
from deploy_robust.errors import UserError, first_line

_PICKLED_RECORDS = (".pkl", ".debug_pkl")
# bytes per element of the storage types TorchScript writes (an unknown type is counted as 1 byte)
_ITEM_BYTES = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
}


def load_torchscript(path: Path) -> nn.Module:
    """The ScriptModule in `path` (on the CPU); UserError for a forged or damaged archive."""
    check_torchscript_archive(path)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise UserError(f"{path.name}: not a loadable TorchScript archive: {first_line(e)}") from None


def check_torchscript_archive(path: Path) -> None:
    """Record sizes bounded by the file, no unreachable memo slot, every storage's record as large as it declares."""
    stored = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {}
            for info in archive.infolist():
                compressed = info.compress_type != zipfile.ZIP_STORED
                if not compressed and info.file_size > stored:
                    raise UserError(
                        f"{path.name}: record {info.filename} declares {info.file_size} bytes in a {stored}-byte file"
                    )
                limits.check_declared_size(
                    info.file_size, info.compress_size, f"{path.name}: record {info.filename}", compressed=compressed
                )
                sizes[info.filename] = info.file_size
            for name in sizes:
                if name.endswith(_PICKLED_RECORDS):
                    raw = archive.read(name)
                    limits.check_pickle_memo(raw, f"{path.name}: {name}")
                    if name.endswith(".pkl"):
                        _check_storages(path.name, name, raw, sizes)
    except UserError:
        raise
    except Exception as e:  # zipfile on untrusted bytes: BadZipFile, CRC and zlib errors, bad names
        raise UserError(f"{path.name}: a damaged TorchScript archive ({type(e).__name__}: {first_line(e)})") from None


def _check_storages(file: str, record: str, raw: bytes, sizes: dict[str, int]) -> None:
    """Each storage `record` names (its records lie in the folder named after it: data.pkl -> data/<key>)
    must be backed by at least the bytes it declares."""
    folder = record[: -len(".pkl")] + "/"
    for kind, key, numel in _storage_ids(file, record, raw):
        if not isinstance(key, str) or isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise UserError(f"{file}: {record} names a storage with a malformed key or size ({key!r}, {numel!r})")
        needed = numel * _ITEM_BYTES.get(kind, 1)
        held = sizes.get(folder + key)
        if held is None:
            raise UserError(f"{file}: {record} names storage {key}, which the archive does not hold")
        if held < needed:
            raise UserError(
                f"{file}: storage {folder}{key} declares {numel} elements ({needed} bytes) but holds "
                f"{held} bytes (a forged or truncated archive)"
            )


class _Inert:
    """What every class a TorchScript pickle names becomes here: built from any arguments, does nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class _StorageIdReader(pickle.Unpickler):
    """Unpickles with inert classes and records each persistent id ('storage', type, key, location, numel)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(io.BytesIO(raw))
        self.storages: list[tuple[str, object, object]] = []

    def find_class(self, module: str, name: str):
        return type(name, (_Inert,), {})  # never imported: only its name is kept

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise pickle.UnpicklingError("a persistent id that is not a TorchScript storage")
        kind = pid[1].__name__ if isinstance(pid[1], type) else ""
        self.storages.append((kind, pid[2], pid[4]))
        return _Inert()


def _storage_ids(file: str, record: str, raw: bytes) -> list[tuple[str, object, object]]:
    reader = _StorageIdReader(raw)
    try:
        reader.load()
    except Exception as e:  # the memo and lengths were bounded already; anything else is a malformed pickle
        raise UserError(f"{file}: {record} is not a TorchScript pickle ({type(e).__name__}: {first_line(e)})") from None
    return reader.storages
