"""Finished batches of a long verify run, kept in the bundle until the run completes.

A batch file is reused only when it provably belongs to this run: its name is keyed by a hash
of every setting that changes results, and its bytes carry an HMAC-SHA256 over that key, the
batch index, the hash of the batch's images and labels, and the results. The HMAC key is this
user's own (`resume.key` under $DEPLOY_ROBUST_HOME, else $XDG_CACHE_HOME/deploy-robust, else
~/.cache/deploy-robust; created 0600 on first use), so batch files forged or copied in from
elsewhere (a downloaded bundle, another user) fail the check and are recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.bundle.store import write_file_atomic
from deploy_robust.hashing import sha256_bytes
from deploy_robust.home import user_home

_TAG = 32


def resume_key() -> bytes | None:
    """This user's HMAC key for resume files; None when it can be neither read nor created."""
    path = user_home() / "resume.key"
    try:
        if not path.exists():
            # written whole under a private name, then linked into place: a process that reads the key (another
            # verify rank starting at the same moment) never sees it half-written, and the first link wins
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(f".resume.key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            try:
                os.link(staging, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(staging)
        key = path.read_bytes()
    except OSError:
        return None
    return key if len(key) >= 16 else None


class BatchCheckpoint:
    """Save and reload the results of each finished batch of one verify run."""

    def __init__(self, bundle_path: Path, settings: dict[str, Any], enabled: bool) -> None:
        self.key = sha256_bytes(json.dumps(settings, sort_keys=True).encode())[:16]
        self.root = Path(bundle_path) / ".verify-progress"
        self.dir = self.root / self.key
        self.secret = resume_key() if enabled else None
        self.reused = self.rejected = 0

    def _tag(self, index: int, inputs: tuple[np.ndarray, ...], payload: bytes) -> bytes:
        digest = hmac.new(self.secret, digestmod=hashlib.sha256)
        digest.update(f"{self.key}:{index}:".encode())
        for array in inputs:
            digest.update(hashlib.sha256(np.ascontiguousarray(array).tobytes()).digest())
        digest.update(payload)
        return digest.digest()

    def load(self, index: int, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray] | None:
        """The saved results of batch `index` of these `inputs`, or None (absent, or failing the check)."""
        path = self.dir / f"batch-{index:05d}.npz"
        if self.secret is None or path.is_symlink() or not path.is_file():
            return None
        raw = path.read_bytes()
        tag, payload = raw[:_TAG], raw[_TAG:]
        if len(raw) <= _TAG or not hmac.compare_digest(tag, self._tag(index, inputs, payload)):
            self.rejected += 1
            return None
        with np.load(io.BytesIO(payload), allow_pickle=False) as f:
            self.reused += 1
            return {k: f[k] for k in f.files}

    def save(self, index: int, inputs: tuple[np.ndarray, ...], result: dict[str, np.ndarray]) -> None:
        if self.secret is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **result)
        payload = buffer.getvalue()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_file_atomic(self.dir / f"batch-{index:05d}.npz", self._tag(index, inputs, payload) + payload)

    def summary(self) -> dict[str, int]:
        return {"reused_batches": self.reused, "rejected_batch_files": self.rejected}

    def finish(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
