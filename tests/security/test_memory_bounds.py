"""Issue 26 finding 7: a forged model file under 1 MB costs under 1 GiB and ends in one line, exit 2, never a crash."""

import json
import subprocess
import sys

import torch

from tests.conftest import REPO, make_tiny
from tests.ingest.test_torchscript import _archive, _forge_memo_index, _last_storage, _rewrite_member


def _info_in_a_child(path) -> tuple[int, str, int]:
    # VmHWM, the child's own peak: getrusage's ru_maxrss keeps the forking parent's high-water mark across exec
    code = (
        "import json, sys\nfrom deploy_robust.bench.measure import peak_rss_mib\nfrom deploy_robust.cli import main\n"
        "code = main(['info', sys.argv[1]])\nprint(json.dumps([code, peak_rss_mib()]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"the child died (signal {-done.returncode})" if done.returncode < 0 else done.stderr
    exit_code, peak_mib = json.loads(done.stdout.strip().splitlines()[-1])
    return exit_code, done.stderr, peak_mib


def test_the_forged_archives_cost_no_memory_and_exit_2_in_one_line(tmp_path):
    """Issue 26 finding 7: without the checks the forged memo index drove `info` to a 4.3 GiB peak, and the
    emptied storage record made the first forward pass read past its buffer (SIGSEGV), both measured."""
    forged_memo = _archive(tmp_path)
    _rewrite_member(forged_memo, "/data.pkl", _forge_memo_index)
    emptied = tmp_path / "emptied.ts"
    torch.jit.save(torch.jit.script(make_tiny()), emptied)
    _rewrite_member(emptied, _last_storage(emptied.read_bytes()), lambda raw: b"")
    for path, what in ((forged_memo, "memo slot"), (emptied, "but holds 0 bytes")):
        exit_code, stderr, peak_mib = _info_in_a_child(path)
        assert exit_code == 2
        assert len(stderr.strip().splitlines()) == 1 and what in stderr
        assert peak_mib < 1024  # under 1 GiB
