import zipfile

import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.ingest.formats import ModelFormat, sniff


def test_each_format_is_recognized_from_its_bytes(tmp_path, tiny_model):
    x = torch.rand(2, 3, 16, 16)
    files = {
        ModelFormat.TORCH_SAVE: lambda p: torch.save(tiny_model.state_dict(), p),
        ModelFormat.TORCHSCRIPT: lambda p: torch.jit.save(torch.jit.trace(tiny_model, x), p),
        ModelFormat.EXPORTED_PROGRAM: lambda p: torch.export.save(torch.export.export(tiny_model, (x,)), p),
        ModelFormat.LEGACY_TORCH_SAVE: lambda p: torch.save(
            tiny_model.state_dict(), p, _use_new_zipfile_serialization=False
        ),
    }
    for expected, write in files.items():
        path = tmp_path / f"model_{expected.value}.bin"  # no telling suffix: detection reads bytes
        write(path)
        assert sniff(path) is expected


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (bytes(range(256)) * 8, "not a model file"),
        (b"PK\x03\x04garbage-not-a-zip", "damaged or truncated archive"),
    ],
)
def test_unreadable_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        sniff(path)


def test_zip_that_is_not_a_torch_archive(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(UserError, match="not a PyTorch model archive"):
        sniff(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        sniff(tmp_path / "nope.pt")
