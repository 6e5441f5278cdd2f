"""Load a torch.export `.pt2` archive without ever unpickling an untrusted object.

`torch.export.load` unpickles parts of the archive with `weights_only=False` (weights or
constants saved with `use_pickle`, custom and opaque objects, and, as a fallback, the sample
inputs), so a downloaded `.pt2` can run code on load. Here every part is checked first, and
a part that would need a full unpickler is refused by name unless the user passed
`--trust-pickle`. As a second line, while torch reads the archive, `torch.load` is forced to
`weights_only=True` and the plain unpicklers refuse to run.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Iterator

import torch

from deploy_robust.errors import UserError, first_line

_PICKLED_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")


def load_exported_program(path: Path, trust_pickle: bool = False) -> "torch.export.ExportedProgram":
    """The ExportedProgram in `path`; UserError naming the part when it would need unpickling."""
    if not trust_pickle:
        _check_parts(path)
    guard = contextlib.nullcontext() if trust_pickle else _weights_only_unpickling()
    try:
        with warnings.catch_warnings(), guard:
            warnings.simplefilter("ignore")
            return torch.export.load(str(path))
    except _RefusedPickle as e:
        raise UserError(
            f"{path.name}: {e}; unpickling it can run arbitrary code, so it was not loaded "
            "(only if you trust where the file came from, pass --trust-pickle)"
        ) from None
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path.name}: not a loadable torch.export program: {first_line(e)}") from None


def _check_parts(path: Path) -> None:
    """Refuse the archive when any of its parts is a pickle that weights_only cannot read."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                stem = name.split("/", 1)[1] if "/" in name else name
                if stem.startswith(("data/weights/", "data/constants/")) and stem.endswith(".pt"):
                    raise UserError(
                        f"{path.name}: part {stem} is a legacy pickled weights file; re-save the program "
                        "with torch.export.save, or pass --trust-pickle if you trust its source"
                    )
                if stem.startswith(("data/weights/", "data/constants/")) and stem.endswith("_config.json"):
                    _check_payload_config(path, stem, archive.read(name))
                if stem.startswith("data/sample_inputs/"):
                    _check_weights_only(path, stem, archive.read(name))
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:  # zlib/CRC errors surface as these
        raise UserError(f"{path.name}: a damaged or truncated archive ({e})") from None


def _check_payload_config(path: Path, stem: str, raw: bytes) -> None:
    try:
        config = json.loads(raw).get("config", {})
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise UserError(f"{path.name}: part {stem} is not valid JSON") from None
    if not isinstance(config, dict):
        raise UserError(f"{path.name}: part {stem} has no 'config' mapping")
    for fqn, meta in config.items():
        if not isinstance(meta, dict):
            raise UserError(f"{path.name}: part {stem}: entry {fqn!r} is not an object")
        stored = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or stored.startswith(_PICKLED_OBJECT_PREFIXES):
            raise UserError(
                f"{path.name}: {fqn!r} (part {stem.rsplit('/', 1)[0]}/{stored}) is stored as a pickled "
                "Python object; unpickling it can run arbitrary code, so it was not loaded "
                "(only if you trust where the file came from, pass --trust-pickle)"
            )


def _check_weights_only(path: Path, stem: str, raw: bytes) -> None:
    if not raw:
        return
    try:
        torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception:
        raise UserError(
            f"{path.name}: part {stem} is a pickle that references Python objects beyond tensors; "
            "unpickling it can run arbitrary code, so it was not loaded "
            "(only if you trust where the file came from, pass --trust-pickle)"
        ) from None


class _RefusedPickle(Exception):
    pass


@contextlib.contextmanager
def _weights_only_unpickling() -> Iterator[None]:
    """While torch reads the archive: torch.load only with weights_only=True, no plain unpickling."""
    original_load, original_loads = torch.load, pickle.loads
    original_obj = getattr(torch._C, "_pickle_load_obj", None)

    def safe_load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return original_load(f, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise _RefusedPickle("a part is a pickle that references Python objects") from e

    def refuse(*_args, **_kwargs):
        raise _RefusedPickle("a part is a pickled Python object")

    torch.load, pickle.loads = safe_load, refuse
    if original_obj is not None:
        torch._C._pickle_load_obj = refuse
    try:
        yield
    finally:
        torch.load, pickle.loads = original_load, original_loads
        if original_obj is not None:
            torch._C._pickle_load_obj = original_obj
