"""Finished batches of a long verify run, kept in the bundle until the run completes.

A batch file is reused only when it provably belongs to this run: its name is keyed by a hash
of every setting that changes results, and its bytes carry an HMAC-SHA256 over that key, the
batch index, the hash of the batch's images and labels, and the results. The HMAC key is this
user's own (derived from `user.key` in the checked home: $DEPLOY_ROBUST_HOME, else
$XDG_CACHE_HOME/deploy-robust, else ~/.cache/deploy-robust; see deploy_robust.private_files), so
batch files forged or copied in from elsewhere (a downloaded bundle, another user) fail the check
and are recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deploy_robust.hashing import sha256_bytes
from deploy_robust.private_files import check_folders_below, read_private, user_key, write_private

_TAG = 32


def resume_key() -> bytes | None:
    """This user's HMAC key for resume files; None when the user's folder cannot be written (no resume). A
    folder others could write to, or a planted key, is refused with one line (deploy_robust.private_files)."""
    try:
        return user_key("verify-resume")
    except OSError:
        return None


class BatchCheckpoint:
    """Save and reload the results of each finished batch of one verify run."""

    def __init__(self, bundle_path: Path, settings: dict[str, Any], enabled: bool) -> None:
        self.key = sha256_bytes(json.dumps(settings, sort_keys=True).encode())[:16]
        self.root = Path(bundle_path) / ".verify-progress"
        self.dir = self.root / self.key
        self.secret = resume_key() if enabled else None
        if self.secret is not None and (os.path.lexists(self.root) or os.path.lexists(self.dir)):
            check_folders_below(self.root.parent, Path(self.root.name) / self.key)  # a planted link: refused now
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
        if self.secret is None or not os.path.lexists(path):
            return None
        raw = read_private(path)
        if raw is None:  # a link, not a file, another user's
            self.rejected += 1
            return None
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
        check_folders_below(self.root.parent, Path(self.root.name) / self.key)
        write_private(self.dir / f"batch-{index:05d}.npz", self._tag(index, inputs, payload) + payload)

    def summary(self) -> dict[str, int]:
        return {"reused_batches": self.reused, "rejected_batch_files": self.rejected}

    def finish(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
