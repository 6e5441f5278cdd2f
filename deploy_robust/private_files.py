"""Files deploy-robust writes for later runs of its own (caches, resume batches, keys), and the checks they pass
when read back.

Threat model (docs/trust.md): someone else may be able to write into a folder we use (a world-writable
$DEPLOY_ROBUST_HOME, a folder owned by another user, a symlink planted where we are about to write, a tune output
folder shared with others). So:

- a folder we keep things in is a real directory (never followed through a symbolic link), owned by this user,
  writable by nobody else, reached through parents that nobody else can rename it out of; we create the missing
  ones 0700 and tighten our own readable-by-others ones to 0700; anything else is refused with one line;
- files are created 0600, whole or not at all, never written or read through a link;
- what a cache says is trusted only under an HMAC-SHA256 with this user's key (`user.key` in the checked home),
  so entries written by anyone else (or edited by hand) fail the check and are recomputed, and counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from deploy_robust.errors import UserError
from deploy_robust.home import user_home

KEY_NAME = "user.key"
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY = stat.S_IRWXG | stat.S_IRWXO


def _refuse(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} {why}; deploy-robust keeps its caches and keys only in folders of this user's own "
        "(set DEPLOY_ROBUST_HOME to one, or fix it: chmod 700, chown to this user)"
    )


def _check_parents(path: Path) -> None:
    """Every folder above `path` (as written and as resolved) is owned by this user or root and, unless sticky
    like /tmp, writable by nobody else: no one else can swap `path` out from under us."""
    me = os.geteuid()
    for chain in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        for parent in chain.parents:
            try:
                st = os.lstat(parent)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                if st.st_uid not in (me, 0):
                    raise _refuse(path, f"is reached through a symbolic link ({parent}) owned by another user")
                continue
            if st.st_uid not in (me, 0):
                raise _refuse(path, f"lies inside {parent}, which belongs to another user (uid {st.st_uid})")
            if st.st_mode & _OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
                raise _refuse(path, f"lies inside {parent}, which other users can write to")


def check_folder(path: Path) -> Path:
    """`path` as a private folder of this user's: created 0700 where missing, else refused unless it is a real
    directory of this user's that nobody else can write (one readable by others is tightened to 0700)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        _check_parents(path)
        missing = [p for p in [path, *path.parents] if not os.path.lexists(p)]
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a folder")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"belongs to another user (uid {st.st_uid})")
    if st.st_mode & _OTHERS_WRITE:
        raise _refuse(path, f"can be written by other users (mode {stat.S_IMODE(st.st_mode):04o})")
    if st.st_mode & _OTHERS_ANY:
        os.chmod(path, 0o700)
    _check_parents(path)
    return path


def check_folders_below(base: Path, relative: str | Path) -> Path:
    """`base/relative` with every folder from `base` down checked (or created) as by `check_folder`."""
    path = Path(base)
    for part in Path(relative).parts:
        path = check_folder(path / part)
    return path


def user_folder(*parts: str) -> Path:
    """This user's checked deploy-robust folder, or a checked subfolder of it."""
    return check_folders_below(check_folder(user_home()), Path(*parts)) if parts else check_folder(user_home())


def read_private(path: Path) -> bytes | None:
    """The bytes of `path`, a regular file of this user's that nobody else can write, opened without following
    a link; None when it is absent or fails any of that."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & _OTHERS_WRITE:
            return None
        return f.read()


def write_private(path: Path, data: bytes | str) -> Path:
    """Write `path` (0600) whole or not at all: a new private temporary file beside it, renamed over it (a
    planted link at `path` is replaced, never followed)."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    # mkstemp: 0600, O_EXCL; the pid in the name lets the bundle store remove what a killed writer left
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def user_key(purpose: str) -> bytes:
    """This user's key for `purpose` (one key per use, derived from `user.key`, created on first use)."""
    folder = user_folder()
    path = folder / KEY_NAME
    master = read_private(path)
    if master is None and not os.path.lexists(path):
        # written whole under a private name, then linked into place: a process that reads the key (another verify
        # rank starting at the same moment) never sees it half-written, and the first link wins
        staging = folder / f".{KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(staging, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(staging)
        master = read_private(path)
    if master is None or len(master) < 16:
        raise _refuse(
            path,
            "is not a private key file of this user's (a link, another user's, writable by others, "
            "or shorter than 16 bytes)",
        )
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


def tag(key: bytes, *parts: bytes | str) -> str:
    """HMAC-SHA256 of `parts` (length-prefixed, so no two lists of parts collide) as hex."""
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        digest.update(len(raw).to_bytes(8, "big") + raw)
    return digest.hexdigest()


class SignedJSON:
    """A JSON object in a private file, trusted only under this user's HMAC: `load()` gives its entries, or an
    empty dict (and `rejected` > 0) when the file is malformed, too deep, forged or edited."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.path, self.key = Path(path), user_key(purpose)
        self.rejected = 0

    def load(self) -> dict[str, Any]:
        raw = read_private(self.path)
        if raw is None:
            if os.path.lexists(self.path):
                self.rejected += 1
            return {}
        try:
            document = json.loads(raw)
            entries, signature = document["entries"], document["tag"]
            if not isinstance(entries, dict) or not isinstance(signature, str):
                raise TypeError
            body = json.dumps(entries, sort_keys=True)
        except (ValueError, TypeError, KeyError, RecursionError):
            self.rejected += 1
            return {}
        if not hmac.compare_digest(signature, tag(self.key, self.path.name, body)):
            self.rejected += 1
            return {}
        return entries

    def save(self, entries: dict[str, Any]) -> None:
        body = json.dumps(entries, sort_keys=True)
        document = {"entries": entries, "tag": tag(self.key, self.path.name, body)}
        write_private(self.path, json.dumps(document, indent=1, sort_keys=True))


def sha256_of(path: Path) -> str | None:
    raw = read_private(path)
    return None if raw is None else hashlib.sha256(raw).hexdigest()


class SealedFolder:
    """A private folder that another program writes into (OpenVINO's compiled-model cache): before the program
    reads it, `admit()` deletes every file the signed index does not vouch for; after it wrote, `seal()` records
    the sha256 of every file there. A file planted or swapped in (a blob of another model under this graph's
    name) is deleted before it can be read, and counted."""

    INDEX = ".index.json"

    def __init__(self, path: Path, purpose: str) -> None:
        self.path = check_folder(path)
        self.index = SignedJSON(self.path / self.INDEX, purpose + ":" + self.path.name)
        self.removed = 0
        self.admitted: dict[str, str] = {}  # name -> sha256 of the files admit() vouched for

    def admit(self) -> int:
        known = self.index.load()
        self.admitted = {}
        for entry in os.scandir(self.path):
            if entry.name == self.INDEX:
                continue
            digest = None if entry.is_symlink() or not entry.is_file() else sha256_of(Path(entry.path))
            if digest is not None and known.get(entry.name) == digest:
                self.admitted[entry.name] = digest
                continue
            if entry.is_dir(follow_symlinks=False):
                raise _refuse(Path(entry.path), "is a folder inside a cache folder")
            os.unlink(entry.path)
            self.removed += 1
        return self.removed

    def seal(self) -> None:
        """Record what is there now: the files `admit` checked keep their digests, new ones are hashed once."""
        found = dict(self.admitted)
        for entry in os.scandir(self.path):
            if entry.name != self.INDEX and entry.name not in found and entry.is_file(follow_symlinks=False):
                digest = sha256_of(Path(entry.path))
                if digest is not None:
                    found[entry.name] = digest
        self.index.save(found)
