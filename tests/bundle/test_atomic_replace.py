"""kill -9 at any moment of a bundle write: `-o` holds the old bundle or the new one, never neither."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from deploy_robust.bundle import open_bundle, write_bundle
from deploy_robust.bundle.store import exchange_paths, remove_stale_temporaries
from tests.bundle.test_store import MANIFEST
from tests.conftest import REPO

# A child that writes bundle versions in a loop and, when told, kills itself with SIGKILL at a
# named point of write_bundle: just before the swap, just after it, or inside the fallback's
# two renames. `--loop` writes forever (the parent kills it from outside at random moments).
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from deploy_robust.bundle import store
    from tests.bundle.test_store import MANIFEST

    out, where = Path(sys.argv[1]), sys.argv[2]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real_exchange, real_rename = store.exchange_paths, os.rename
    if where == "before-swap":
        store.exchange_paths = lambda a, b: die()
    elif where == "after-swap":
        store.exchange_paths = lambda a, b: real_exchange(a, b) and die()
    elif where == "between-renames":
        store.exchange_paths = lambda a, b: False  # the fallback for systems without RENAME_EXCHANGE
        def rename(a, b):
            real_rename(a, b)
            if ".old-" in str(b):
                die()
        store.os.rename = rename
    version = 0
    if where == "file-loop":  # what bench and verify do: replace one file of the bundle, over and over
        bundle = store.open_bundle(out)
        while True:
            version += 1
            bundle.write_file("bench.json", '{"version": %d, "pad": "%s"}' % (version, "x" * 100000))
    while True:
        version += 1
        store.write_bundle(out, {"model.onnx": f"v{version}".encode()}, MANIFEST)
        if where != "loop":
            break
""")


def _child(out, where):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), where], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}
    )


@pytest.mark.parametrize("where", ["before-swap", "after-swap", "between-renames"])
def test_a_kill_at_each_point_of_the_swap_leaves_a_whole_bundle(tmp_path, where):
    out = tmp_path / "b"
    write_bundle(out, {"model.onnx": b"old"}, MANIFEST)
    child = _child(out, where)
    assert child.wait(timeout=60) == -signal.SIGKILL
    bundle = open_bundle(out)  # after the fallback's first rename, open_bundle puts the old bundle back
    assert bundle.model_path.read_bytes() in (b"old", b"v1")
    write_bundle(out, {"model.onnx": b"next"}, MANIFEST)  # the next write cleans what the dead one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_kill_minus_9_at_random_moments_never_leaves_output_missing(tmp_path):
    if not _has_exchange(tmp_path):
        pytest.skip("this file system has no renameat2(RENAME_EXCHANGE); the fallback is tested above")
    out = tmp_path / "b"
    write_bundle(out, {"model.onnx": b"v0"}, MANIFEST)
    for delay in (0.35, 0.5, 0.65, 0.8, 0.95, 1.1):
        child = _child(out, "loop")
        time.sleep(delay)  # the interpreter starts in ~0.3 s; then it rewrites the bundle in a tight loop
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert out.is_dir() and open_bundle(out).model_path.read_bytes().startswith(b"v")
    remove_stale_temporaries(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_kill_minus_9_during_bench_and_verify_writes_leaves_each_file_whole(tmp_path):
    import json

    out = tmp_path / "b"
    write_bundle(out, {"model.onnx": b"v0"}, MANIFEST)
    open_bundle(out).write_file("bench.json", '{"version": 0}')
    for delay in (0.35, 0.5, 0.65, 0.8):
        child = _child(out, "file-loop")
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert json.loads((open_bundle(out).path / "bench.json").read_text())["version"] >= 0
    open_bundle(out).write_file("bench.json", "{}")  # the next write removes the dead writers' temporaries
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "manifest.json", "model.onnx"]


def _has_exchange(tmp_path) -> bool:
    a, b = tmp_path / "xa", tmp_path / "xb"
    a.mkdir(), b.mkdir()
    (a / "1").touch()
    try:
        swapped = exchange_paths(a, b)
    except OSError:
        swapped = False
    result = swapped and (b / "1").exists()
    for p in (a, b):
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    return result
