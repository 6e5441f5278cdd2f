"""Read and write bundle directories.

Writes are atomic at every instant:
- a whole bundle is written to a temporary directory beside `-o` and then swapped in with one
  `renameat2(RENAME_EXCHANGE)` (Linux >= 3.15), so `-o` always holds the old or the new bundle,
  even under kill -9. Where the exchange is unavailable (other systems, some filesystems) the
  fallback is two renames, with a window in which `-o` is briefly absent (the old bundle is then
  at `.NAME.old-PID`); `write_bundle` says which path it took in `Bundle.swap`.
- a file a stage adds (bench.json, plots, reports) is written to a fresh temporary file inside
  the bundle (O_EXCL, never following a link) and renamed over the old name: a planted symlink
  is replaced, never written through.
- temporary directories left by killed runs (their PID no longer alive) are removed by the next
  write to the same `-o`.

Reads refuse bundles holding symlinks or files that resolve outside the bundle, and check the
sha256 of every file the manifest describes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_robust.bundle import manifest as manifest_schema
from deploy_robust.bundle.manifest import Manifest
from deploy_robust.errors import UserError
from deploy_robust.hashing import sha256_bytes, sha256_file
from deploy_robust.private_files import write_private
from deploy_robust.spec import InputSpec

MANIFEST = "manifest.json"
RUNS = "runs"  # one folder per verify or bench run (Bundle.write_run)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass
class Bundle:
    path: Path
    manifest: Manifest
    swap: str = "none"  # how write_bundle put it in place: "new", "exchange" or "two-renames"

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model.file

    @property
    def spec(self) -> InputSpec:
        return self.manifest.input

    @property
    def precision(self) -> str:
        return self.manifest.precision.mode

    @property
    def fixed_batch(self) -> int | None:
        return self.manifest.model.batch

    def write_file(self, name: str, data: bytes | str) -> Path:
        """Add or replace one file (e.g. bench.json) atomically; `name` is a plain file name."""
        if not _is_plain_name(name):
            raise UserError(f"{name!r} is not a plain file name inside the bundle")
        remove_stale_temporaries(self.path / name)
        return write_file_atomic(self.path / name, data)

    def write_run(self, label: str, files: dict[str, bytes | str], when: float | None = None) -> Path:
        """Keep one verify or bench run whole in its own folder, `runs/<UTC time>-<label>/` (never replaced:
        a second run in the same second gets `-2`), written under a temporary name and renamed in at once, then
        copied to the bundle's top level, where the files are the latest run's. Returns the folder."""
        runs = self.path / RUNS
        if runs.is_symlink() or (runs.exists() and not runs.is_dir()):
            raise UserError(f"{runs} is not a folder; refusing to write runs through it")
        runs.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
        base = f"{stamp}-{_run_label(label)}"
        partial = Path(tempfile.mkdtemp(prefix=f".{base}.tmp-{os.getpid()}-", dir=runs))
        for name, data in files.items():
            if not _is_plain_name(name):
                raise UserError(f"{name!r} is not a plain file name inside the run folder")
            _write_new(partial / name, data.encode() if isinstance(data, str) else data)
        for attempt in range(1, 1000):
            target = runs / (base if attempt == 1 else f"{base}-{attempt}")
            if target.exists():
                continue
            try:
                os.rename(partial, target)
            except OSError:
                continue
            _fsync_dir(runs)
            for name, data in files.items():  # the latest run's copies at the top level
                self.write_file(name, data)
            return target
        raise UserError(f"{runs}: could not name a new run folder for {base}")

    def runs(self) -> list[Path]:
        """The kept runs, oldest first: by the UTC second their names start with, then by when they were made."""
        folder = self.path / RUNS
        if not folder.is_dir() or folder.is_symlink():
            return []
        runs = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
        return sorted(runs, key=lambda p: (p.name[:15], p.stat().st_mtime_ns, p.name))


def _run_label(label: str) -> str:
    """A run label safe as part of a folder name: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "run"


def is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def open_bundle(path: str | Path) -> Bundle:
    """A bundle whose manifest validates, with no symlinks, and whose described files match their hashes."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        remove_stale_temporaries(path)  # a write killed between the fallback's two renames
    if not path.exists() and not path.is_symlink():
        raise UserError(f"bundle not found: {path}")
    if not is_bundle(path):
        raise UserError(f"{path} is not a bundle (no {MANIFEST})")
    _refuse_links(path)
    try:
        doc = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path / MANIFEST}: not valid JSON ({str(e).splitlines()[0]})") from None
    bundle = Bundle(path, Manifest.from_json(doc, str(path / MANIFEST)))
    if not bundle.model_path.is_file():
        raise UserError(f"{path}: the manifest names {bundle.model_path.name}, which is missing")
    _check_hashes(bundle)
    return bundle


def _refuse_links(path: Path) -> None:
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; open the bundle directory itself")
    root = path.resolve()
    for entry in path.iterdir():
        if entry.is_symlink():
            raise UserError(f"{path}: {entry.name} is a symbolic link; bundles hold plain files only (refusing it)")
        if root not in entry.resolve().parents:
            raise UserError(f"{path}: {entry.name} resolves outside the bundle; refusing it")


def _check_hashes(bundle: Bundle) -> None:
    described = dict(bundle.manifest.files)
    described.setdefault(bundle.manifest.model.file, bundle.manifest.model.sha256)
    for name, expected in sorted(described.items()):
        if expected is None:
            continue
        file = bundle.path / name
        if not file.is_file():
            raise UserError(f"{bundle.path}: the manifest describes {name}, which is missing")
        if sha256_file(file) != expected:
            raise UserError(
                f"{bundle.path}: {name} does not match the sha256 its manifest records; the bundle "
                "was modified after export (re-export it)"
            )


def write_bundle(out: str | Path, files: dict[str, bytes], manifest: dict[str, Any]) -> Bundle:
    """Write `files` and the manifest to `out` all at once: readers never see half a bundle.

    The manifest gains `files`: the sha256 of every file written. An existing bundle at `out`
    is replaced; any other non-empty directory, a file or a symlink is left alone.
    """
    out = Path(out)
    if out.is_symlink():
        raise UserError(f"{out} is a symbolic link; refusing to replace it (name the real directory)")
    if out.exists() and not is_bundle(out) and (out.is_file() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not a bundle; refusing to overwrite it")
    bad = [name for name in files if not _is_plain_name(name) or name == MANIFEST]
    if bad:
        raise ValueError(f"bundle file names must be plain names other than {MANIFEST}: {bad}")
    manifest = dict(manifest) | {"files": {name: sha256_bytes(data) for name, data in sorted(files.items())}}
    typed = Manifest.from_json(manifest, f"{out}/{MANIFEST}")  # a writer's mistake fails before anything is written
    parent = out.parent
    _mkdir(parent)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.pid{os.getpid()}.", suffix=".tmp", dir=parent))
    swap = "new"
    try:
        for name, data in files.items():
            _write_new(tmp / name, data)
        _write_new(tmp / MANIFEST, manifest_schema.dumps(manifest).encode())
        _fsync_dir(tmp)
        if out.exists():
            swap = _replace_directory(tmp, out)
        else:
            os.rename(tmp, out)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the old bundle
    return Bundle(out, typed, swap)


def _replace_directory(new: Path, out: Path) -> str:
    """Put `new` at `out`; `new` ends up holding the old contents (or is gone)."""
    if exchange_paths(new, out):
        return "exchange"
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)
    return "two-renames"


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the system has no such call."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # kernel or filesystem without the exchange: use the documented fallback
    raise OSError(err, os.strerror(err), str(b))


@functools.lru_cache(maxsize=1)
def _renameat2():
    """libc's renameat2, or None where libc has none (found once per process)."""
    libc_name = ctypes.util.find_library("c")
    function = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:pid(?P<pid>\d+)\..*\.tmp|old-(?P<old>\d+))$")


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove what earlier writes to `out` left when their process died (its PID is gone).

    A bundle set aside by the two-rename fallback (`.NAME.old-PID`) while `out` is missing is
    put back at `out` instead: the write that set it aside never finished."""
    removed = []
    try:
        entries = sorted(out.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or match["name"] != out.name or entry.is_symlink():
            continue
        pid = int(match["pid"] or match["old"])
        if pid == os.getpid() or _alive(pid):
            continue
        if match["old"] and not out.exists() and not out.is_symlink() and is_bundle(entry):
            os.rename(entry, out)
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def write_file_atomic(path: Path, data: bytes | str) -> Path:
    """Write `path` whole or not at all: a new temporary file beside it, then a rename over it.

    The rename replaces whatever `path` is, a symlink included, without following it."""
    return write_private(path, data)


def _write_new(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mkdir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"cannot write under {path}: it is a file, not a directory")
    path.mkdir(parents=True, exist_ok=True)


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
