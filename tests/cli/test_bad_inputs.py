"""Every kind of bad input: one clear line on stderr, exit code 2, no traceback, no bundle left behind."""

import pickle

import numpy as np
import pytest
import torch

from tests.conftest import make_tiny


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "missing":
        return tmp_path / "absent.pt"
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        torch.save(make_tiny().state_dict(), path)
        path.write_bytes(path.read_bytes()[:1500])
    elif kind == "code_running_pickle":
        with open(path, "wb") as f:
            pickle.dump(_Evil(tmp_path / "pwned"), f, protocol=2)
    elif kind == "whole_module":
        torch.save(make_tiny(), path)
    else:
        torch.save(make_tiny().state_dict(), path)
    return path


@pytest.mark.parametrize(
    "kind, extra, message",
    [
        ("missing", [], "model file not found"),
        ("random_bytes", [], "not a model file"),
        ("truncated", [], "damaged or truncated|truncated or corrupt"),
        ("code_running_pickle", [], "--trust-pickle"),
        ("whole_module", [], "pickled Python object"),
        ("state_dict", ["--arch", "resnet18"], "do not fit architecture 'resnet18'"),
        ("state_dict", ["--arch", "no_such_net"], "unknown architecture 'no_such_net'"),
        ("state_dict", ["--arch", "ARCH", "--input-shape", "1,16,16"], "does not accept inputs of shape"),
    ],
)
def test_bad_model_inputs(cli, tmp_path, tiny_arch_file, kind, extra, message):
    import re

    path = _write(tmp_path, kind)
    extra = [tiny_arch_file if e == "ARCH" else e for e in extra]
    out = tmp_path / "out"
    code, stdout, stderr = cli("export", path, "-o", out, *extra)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy-robust: error: ") and re.search(message, lines[0])
    assert "Traceback" not in stderr and not out.exists()
    assert not (tmp_path / "pwned").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.full((4, 3, 16, 16), np.nan, np.float32), y=np.arange(4)), "contains NaN"),
        (dict(x=np.zeros((0, 3, 16, 16), np.uint8), y=np.zeros(0, np.int64)), "empty"),
        (dict(x=np.zeros((4, 1, 28, 28), np.uint8), y=np.arange(4)), "but the model takes 3x16x16"),
        (dict(x=np.zeros((4, 3, 16, 16), np.uint8)), "no labels"),
    ],
)
def test_bad_datasets(cli, tmp_path, tiny_checkpoint, tiny_arch_file, arrays, message):
    data = tmp_path / "d.npz"
    np.savez(data, **arrays)
    code, _, stderr = cli("eval", tiny_checkpoint, "--arch", tiny_arch_file, "--input-shape", "3,16,16", "--data", data)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_bad_flag_values_are_usage_errors(cli, tiny_checkpoint):
    code, _, err = cli("export", tiny_checkpoint, "--input-shape", "3,abc", "-o", "x")
    assert (
        code == 2
        and err.strip()
        == "deploy-robust: error: export: argument --input-shape: shape must be C,H,W integers; got 3,abc"
    )


def test_debug_shows_the_traceback(cli, tmp_path):
    with pytest.raises(Exception, match="model file not found"):
        cli("export", tmp_path / "absent.pt", "-o", tmp_path / "o", "--debug")


def test_console_script_exit_code(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "deploy_robust", "export", str(tmp_path / "absent.pt"), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"deploy-robust: error: model file not found: {tmp_path / 'absent.pt'}"
    )


def test_a_json_run_that_fails_prints_the_error_envelope_on_stdout(cli, tmp_path):
    import json

    code, stdout, err = cli("export", tmp_path / "missing.pt", "-o", tmp_path / "o", "--json")
    doc = json.loads(stdout)
    assert (
        code == 2 and doc["error"]["exit_code"] == 2 and doc["command"] == "export" and doc["error"]["message"] in err
    )
