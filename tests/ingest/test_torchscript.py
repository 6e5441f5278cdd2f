"""A forged TorchScript archive is refused from its bytes, before TorchScript's C++ unpickler allocates anything."""

import io
import json
import pickletools
import struct
import subprocess
import sys
import zipfile

import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.ingest.torchscript import check_torchscript_archive, load_torchscript
from tests.conftest import REPO, make_tiny


def _archive(tmp_path):
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(make_tiny()), path)
    return path


def _rewrite_member(path, member_suffix, edit):
    """`edit` applied to the first record whose name ends with `member_suffix`."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    target = next(info.filename for info, _ in entries if info.filename.endswith(member_suffix))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info, content in entries:
            dst.writestr(info, edit(content) if info.filename == target else content)
    path.write_bytes(out.getvalue())


def _forge_memo_index(raw: bytes, index: int = 2 ** 28) -> bytes:
    """The first BINPUT of the stream rewritten as LONG_BINPUT `index`: still a well-formed pickle."""
    pos = next(pos for op, _, pos in pickletools.genops(raw) if op.name == "BINPUT")
    return raw[:pos] + b"r" + struct.pack("<I", index) + raw[pos + 2:]


def test_a_real_archive_passes_the_check_and_loads(tmp_path):
    path = _archive(tmp_path)
    check_torchscript_archive(path)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(load_torchscript(path)(x), torch.jit.load(str(path))(x))


@pytest.mark.parametrize("member", ["/data.pkl", ".debug_pkl"])  # debug records are read when an error is shown
def test_a_forged_memo_index_is_refused_naming_the_record(tmp_path, member):
    path = _archive(tmp_path)
    _rewrite_member(path, member, _forge_memo_index)
    with pytest.raises(UserError, match=f"{member}: its pickle names memo slot 268435456"):
        load_torchscript(path)


def test_a_pickled_record_that_is_not_a_pickle_is_refused(tmp_path):
    path = _archive(tmp_path)
    _rewrite_member(path, "/data.pkl", lambda raw: raw[:20] + b"\xff" + raw[21:])
    with pytest.raises(UserError, match="data.pkl: not a valid pickle stream"):
        load_torchscript(path)


def _last_storage(raw: bytes) -> str:
    return max((n for n in zipfile.ZipFile(io.BytesIO(raw)).namelist() if "/data/" in n), key=lambda n: int(n.rsplit("/", 1)[1]))


def test_a_storage_record_smaller_than_it_declares_is_refused(tmp_path):
    path = _archive(tmp_path)
    _rewrite_member(path, _last_storage(path.read_bytes()), lambda raw: b"")
    with pytest.raises(UserError, match=r"storage .*data/\d+ declares \d+ elements \(\d+ bytes\) but holds 0 bytes"):
        load_torchscript(path)


def _info_in_a_child(path) -> tuple[int, str, int]:
    code = ("import json, sys, resource\nfrom deploy_robust.cli import main\ncode = main(['info', sys.argv[1]])\n"
            "print(json.dumps([code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the child died (signal {-done.returncode})" if done.returncode < 0 else done.stderr
    exit_code, peak_kib = json.loads(done.stdout.strip().splitlines()[-1])
    return exit_code, done.stderr, peak_kib


def test_the_forged_archives_cost_no_memory_and_exit_2_in_one_line(tmp_path):
    """Issue 26 finding 7: without the checks the forged memo index drove `info` to a 4.3 GiB peak, and the
    emptied storage record made the first forward pass read past its buffer (SIGSEGV), both measured."""
    forged_memo = _archive(tmp_path)
    _rewrite_member(forged_memo, "/data.pkl", _forge_memo_index)
    emptied = tmp_path / "emptied.ts"
    torch.jit.save(torch.jit.script(make_tiny()), emptied)
    _rewrite_member(emptied, _last_storage(emptied.read_bytes()), lambda raw: b"")
    for path, what in ((forged_memo, "memo slot"), (emptied, "but holds 0 bytes")):
        exit_code, stderr, peak_kib = _info_in_a_child(path)
        assert exit_code == 2
        assert len(stderr.strip().splitlines()) == 1 and what in stderr
        assert peak_kib < 1 << 20   # under 1 GiB
