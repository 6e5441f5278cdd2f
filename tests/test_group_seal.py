"""deploy_robust.group_seal: a payload opens only for its exchange, its sender and its secret."""

import os

import pytest

from deploy_robust.errors import UserError
from deploy_robust.group_seal import SECRET_ENV, seal, unseal


def test_a_sealed_payload_opens_only_for_its_step_and_sender():
    secret = os.urandom(32)
    sealed = seal(b"payload", 3, 1, secret)
    assert unseal(sealed, 3, 1, secret) == b"payload"
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for wrong in [
        (tampered, 3, 1, secret),
        (sealed, 4, 1, secret),
        (sealed, 3, 0, secret),
        (sealed, 3, 1, os.urandom(32)),
        (b"payload", 3, 1, secret),
    ]:
        with pytest.raises(UserError, match="failed its authentication check"):
            unseal(*wrong)


def test_a_bad_secret_is_one_line(monkeypatch):
    from deploy_robust.group_seal import group_secret

    monkeypatch.setenv(SECRET_ENV, "not hex")
    with pytest.raises(UserError, match="must be a hex string"):
        group_secret()
    monkeypatch.setenv(SECRET_ENV, "ab" * 4)
    with pytest.raises(UserError, match="at least 16 bytes"):
        group_secret()
