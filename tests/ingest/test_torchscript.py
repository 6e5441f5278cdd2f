"""A forged TorchScript archive is refused from its bytes, before TorchScript's C++ unpickler allocates anything."""

import io
import pickletools
import struct
import zipfile

import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.ingest.torchscript import check_torchscript_archive, load_torchscript
from tests.conftest import make_tiny


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


def _forge_memo_index(raw: bytes, index: int = 2**28) -> bytes:
    """The first BINPUT of the stream rewritten as LONG_BINPUT `index`: still a well-formed pickle."""
    pos = next(pos for op, _, pos in pickletools.genops(raw) if op.name == "BINPUT")
    return raw[:pos] + b"r" + struct.pack("<I", index) + raw[pos + 2 :]


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
    storages = [n for n in zipfile.ZipFile(io.BytesIO(raw)).namelist() if "/data/" in n]
    return max(storages, key=lambda n: int(n.rsplit("/", 1)[1]))


def test_a_storage_record_smaller_than_it_declares_is_refused(tmp_path):
    path = _archive(tmp_path)
    _rewrite_member(path, _last_storage(path.read_bytes()), lambda raw: b"")
    with pytest.raises(UserError, match=r"storage .*data/\d+ declares \d+ elements \(\d+ bytes\) but holds 0 bytes"):
        load_torchscript(path)
