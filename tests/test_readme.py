"""Every command block of README.md runs, in order, in one working directory, as a newcomer would run it.

`sh` blocks run in bash (`set -e`: a failing command fails the block), `python` blocks in this Python.
The working directory sits beside a `shared` link to ../shared, so the README's `../shared/data/...`
paths resolve as they do from a checkout; blocks that read it are skipped where it is absent. Lines
starting with `make` are the set-up itself (what runs this test) and are not run again. Running every
block takes minutes (it trains, tunes and verifies), so that test is marked slow: `make test-all` runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FENCE = re.compile(r"^```(sh|python)\n(.*?)^```$", re.S | re.M)


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every sh and python block, in order; sh without its `make` lines."""
    blocks = []
    for language, code in FENCE.findall(text):
        if language == "sh":
            code = "\n".join(line for line in code.splitlines() if not line.startswith("make "))
        if code.strip():
            blocks.append((language, code))
    return blocks


def test_the_readme_names_real_commands_only():
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 6
    commands = " ".join(code for language, code in blocks if language == "sh")
    for verb in ("export", "info", "eval", "bench", "verify", "tune", "train", "dq", "ensemble", "gdws"):
        assert f"deploy-robust {verb} " in commands, f"the README shows no `deploy-robust {verb}` example"
    assert not re.search(r"\b(model\.pt|data\.npz|TRAIN\.npz|TEST\.npz)\b", commands), "a placeholder path"


@pytest.mark.slow  # about 6 minutes here (exports, a verify, a tune, training): `make test-all` runs it
def test_every_readme_block_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    env = dict(os.environ, CI="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    ran = 0
    for language, code in readme_blocks((REPO / "README.md").read_text()):
        if "../shared" in code and not SHARED.is_dir():
            continue
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (
            f"README block failed ({done.returncode}):\n{code}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
        ran += 1
    if ran == 0:
        pytest.skip("every README block needs ../shared/data")
