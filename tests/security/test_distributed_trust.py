"""Distributed verify's trust boundary (issue 26, finding 1): `verify --workers` listens on loopback only (a second
process connecting through the machine's other addresses is refused), its store is no socket at all, and what
the ranks exchange is sealed under a per-run secret, so a writer without it is refused instead of merged."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from deploy_robust.errors import UserError
from deploy_robust.group_seal import SECRET_ENV
from tests.test_process_group import spawn_group

psutil = pytest.importorskip("psutil")


def _external_addresses() -> list[str]:
    """This machine's addresses that are not loopback (IPv4 and IPv6, link-local left out)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(a.address.split("%")[0])
            if not (ip.is_loopback or ip.is_link_local):
                found.append(str(ip))
    return found


def _listeners(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    out = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.pid in pids and c.status == psutil.CONN_LISTEN:
            out.add((c.laddr.ip, c.laddr.port))
    return out


def _refused(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect((address, port))
        except OSError:
            return True
    return False


def test_workers_listen_on_loopback_only_and_refuse_other_addresses(tmp_path, digits_bundle):
    external = _external_addresses()
    if not external:
        pytest.skip("this machine has no non-loopback address to connect through")
    command = [
        sys.executable,
        "-m",
        "deploy_robust",
        "verify",
        str(digits_bundle),
        "--data",
        "digits:test",
        "--eps",
        "0.1",
        "--n",
        "360",
        "--batch-size",
        "8",
        "--suite",
        "standard",
        "--no-sweep",
        "--no-resume",
        "--threads",
        "1",
        "--workers",
        "2",
    ]
    parent = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ, CI="1")
    )
    seen: set[tuple[str, int]] = set()
    reached = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and parent.poll() is None:
            try:
                ranks = {p.pid for p in psutil.Process(parent.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                break
            listening = _listeners(ranks | {parent.pid})
            for address, port in listening - seen:
                reached += [(a, port) for a in external if not _refused(a, port)]
            seen |= listening
            if len(seen) >= 2 and len(ranks) >= 2:  # both ranks' gloo listeners are up: the group is formed
                break
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        for child in psutil.process_iter():
            if child.ppid() == parent.pid:
                child.kill()
    assert seen, "the ranks never listened: the group did not form while watched"
    assert all(ipaddress.ip_address(a).is_loopback for a, _ in seen), seen
    assert not reached, f"reachable through the machine's other addresses: {reached}"


def _foreign_rank(rank: int, world: int) -> None:
    os.environ[SECRET_ENV] = ("aa" if rank == world - 1 else "bb") * 32  # the last rank lacks the run's secret
    from deploy_robust import process_group

    with pytest.raises(UserError, match=f"rank {world - 1 - rank} at exchange 0 failed its authentication check"):
        process_group.all_gather_arrays({"broken": np.zeros(4, dtype=bool)})


def test_a_rank_without_the_runs_secret_is_refused_not_merged():
    spawn_group(_foreign_rank, 2)
