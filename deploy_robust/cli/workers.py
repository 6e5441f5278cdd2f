"""`--workers N`: the same command as N processes of one torch.distributed group on this machine.

It sets up what `torchrun --nproc-per-node N` would (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE) and starts `python -m deploy_robust <the same arguments>` once per
rank, so a verify with `--workers` and one under torchrun run the same code. Rank 0 prints as a single
process would; the other ranks are quiet. When a rank fails, the others are stopped and the command ends with
that rank's reason; finished batches are kept, so the same command again continues from them.

No rank listens on a network address that another machine can reach: the group's store is a file in a 0700
temporary folder (not torchrun's TCP store), gloo is pinned to the loopback interface, and each run draws its own
secret that seals every exchanged payload (deploy_robust.process_group).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy_robust.errors import EXIT_BAD_INPUT, EXIT_WORKER_FAILED
from deploy_robust.group_seal import LAUNCHED_AT_ENV, SECRET_ENV, STORE_ENV

GRACE_SECONDS = 10   # after one rank fails, how long rank 0 may take to end (and say why) by itself


def _loopback_interface() -> str | None:
    """The name of the loopback network interface (`lo` on Linux), or None where it cannot be told."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return None
    return next((n for n in names if n == "lo" or n.startswith("lo0")), None)


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def without_workers(argv: list[str]) -> list[str]:
    """`argv` less `--workers N` / `--workers=N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def run_workers(argv: list[str], workers: int) -> int:
    """Run `deploy-robust <argv>` as `workers` ranks on this machine; the exit code is rank 0's, or
    EXIT_WORKER_FAILED when another rank failed first."""
    env = dict(os.environ, WORLD_SIZE=str(workers), LOCAL_WORLD_SIZE=str(workers), GROUP_RANK="0", NODE_RANK="0")
    env[SECRET_ENV] = secrets.token_hex(32)
    env[LAUNCHED_AT_ENV] = repr(time.time())  # so the report's time includes the ranks' start-up
    loopback = _loopback_interface()
    if loopback:
        env["GLOO_SOCKET_IFNAME"] = loopback
    with tempfile.TemporaryDirectory(prefix="deploy-robust-workers-") as logs:   # created 0700
        env[STORE_ENV] = str(Path(logs) / "store")
        errors = [Path(logs) / f"rank{r}.err" for r in range(workers)]
        procs = []
        for r in range(workers):
            quiet = r > 0
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "deploy_robust", *argv], env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else None,
                stderr=errors[r].open("w") if quiet else None))
        try:
            while True:
                codes = [p.poll() for p in procs]
                failed = next((r for r, c in enumerate(codes) if c not in (None, 0)), None)
                if failed is not None or all(c is not None for c in codes):
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            failed = None
            for p in procs:
                p.send_signal(signal.SIGINT)
        if failed:                   # rank 0 may be failing the same way (bad input seen by every rank): let it say so
            try:
                procs[0].wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if procs[0].returncode not in (None, 0):
                failed = 0
        for p in procs:              # a failed rank leaves the others waiting at a collective: stop them
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if failed is None or failed == 0:
            return procs[0].returncode if procs[0].returncode >= 0 else 128 - procs[0].returncode
        code = procs[failed].returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        said = _last_line(errors[failed])
        if code == EXIT_BAD_INPUT and said:
            print(said, file=sys.stderr)
            return code
        print(f"deploy-robust: error: worker rank {failed} {how}{': ' + said if said else ''}; run the same command "
              "again to continue from the finished batches", file=sys.stderr)
        return EXIT_WORKER_FAILED
