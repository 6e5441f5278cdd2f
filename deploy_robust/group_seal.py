"""The per-run secret that authenticates what the ranks of one process group send each other.

Kept apart from `process_group` (which imports torch) so that `verify --workers` can draw the secret and name the
store before torch is imported. Sealing binds a payload to the collective's sequence number and the sending rank:
a process without the secret cannot write into the exchange, and an earlier step's payload cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from deploy_robust.errors import UserError

STORE_ENV = "DEPLOY_ROBUST_GROUP_STORE"  # a FileStore path: the ranks of `--workers` meet there, not on a socket
SECRET_ENV = "DEPLOY_ROBUST_GROUP_SECRET"  # hex; every payload between ranks is sealed under it
LAUNCHED_AT_ENV = "DEPLOY_ROBUST_LAUNCHED_AT"  # wall-clock time `--workers` started the ranks (time.time())
_TAG = 32


def group_secret() -> bytes | None:
    """This run's secret from the environment; None when it is not set."""
    raw = os.environ.get(SECRET_ENV, "")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise UserError(f"{SECRET_ENV} must be a hex string (e.g. 64 hex digits); got {len(raw)} other characters")
    if raw and len(key) < 16:
        raise UserError(f"{SECRET_ENV} must hold at least 16 bytes (32 hex digits); got {len(key)}")
    return key or None


def seal(payload: bytes, sequence: int, sender: int, secret: bytes | None) -> bytes:
    """`payload` with its HMAC-SHA256 under `secret` over (sequence, sender, payload) in front; unsealed (the
    payload alone) without a secret."""
    if secret is None:
        return payload
    tag = hmac.new(secret, f"{sequence}:{sender}:".encode() + payload, hashlib.sha256).digest()
    return tag + payload


def unseal(sealed: bytes, sequence: int, sender: int, secret: bytes | None) -> bytes:
    """The payload of `sealed`, after checking its HMAC; a UserError when it was not sealed by a holder of
    `secret` for this collective and this sender."""
    if secret is None:
        return sealed
    tag, payload = sealed[:_TAG], sealed[_TAG:]
    if len(sealed) < _TAG or not hmac.compare_digest(tag, seal(payload, sequence, sender, secret)[:_TAG]):
        raise UserError(
            f"the data of rank {sender} at exchange {sequence} failed its authentication check (a process "
            f"without this run's {SECRET_ENV} wrote into the group, or the ranks were given different "
            "secrets); refused"
        )
    return payload
