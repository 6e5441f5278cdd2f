"""Run every command block of a documentation page, in order, in one scratch folder, and time each.

The pages: docs/real-size.md (the default; pyautoattack's ResNet-18 through every verb) and README.md (its
examples). The folder sits beside a `shared` link to ../shared and holds a `benchmarks` link to this
checkout's, so the page's `../shared/data/...` and `benchmarks/arch/...` paths resolve as they do from the
checkout's root. `sh` blocks run in bash (`set -e`), `python` blocks in this Python; lines starting with
`pip install` or `make ` are the set-up and are not run. It stops at the first block that fails. The
results name each step (the page's `###` heading above the block), its command, its wall time, its exit
status and the last lines it printed; tools/render_tables.py renders the times into the page. For the
real-size page, without --json, it also saves a screenshot of the verify report (headless Chromium) as
docs/real-size-report.png.

    python benchmarks/page_walkthrough.py [--page README.md] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info, save_result

REPO = Path(__file__).resolve().parents[1]
PAGES = {"docs/real-size.md": "real_size_walkthrough", "README.md": "readme_walkthrough"}
SCREENSHOT = REPO / "docs" / "real-size-report.png"
SHARED = REPO.parent / "shared"
STEP_OR_BLOCK = re.compile(r"^### (?P<step>[^\n]+)$|^```(?P<language>sh|python)\n(?P<code>.*?)^```$", re.S | re.M)
SET_UP = ("pip install", "make ")
TAIL_LINES = 40


def page_blocks(text: str) -> list[tuple[str, str, str]]:
    """(step title, language, code) of every sh and python block of the page, in order, without set-up lines."""
    blocks, step = [], ""
    for match in STEP_OR_BLOCK.finditer(text):
        if match["step"]:
            step = match["step"].strip()
            continue
        code = "\n".join(line for line in match["code"].splitlines() if not line.startswith(SET_UP))
        if code.strip():
            blocks.append((step, match["language"], code))
    return blocks


def run_blocks(page: Path, root: Path) -> list[dict]:
    """Run the page's blocks in ROOT/work; one result per block, up to and including the first that fails."""
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    if SHARED.is_dir() and not (root / "shared").exists():
        (root / "shared").symlink_to(SHARED)
    if not (work / "benchmarks").exists():
        (work / "benchmarks").symlink_to(REPO / "benchmarks")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    steps = []
    for step, language, code in page_blocks(page.read_text()):
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        printed = (done.stdout + done.stderr).splitlines()
        shown = " ".join(code.replace("\\\n", " ").split()) if language == "sh" else f"python: {code.splitlines()[0]}"
        steps.append(
            {
                "step": step,
                "command": shown,
                "seconds": round(time.perf_counter() - start, 1),
                "returncode": done.returncode,
                "output_tail": printed[-TAIL_LINES:],
            }
        )
        print(f"{step}: {steps[-1]['seconds']:.0f} s, exit {done.returncode}", flush=True)
        if done.returncode != 0:
            break
    return steps


def screenshot(page: Path, png: Path) -> None:
    """The verify report as a browser shows it (headless Chromium, Debian's `chromium`), for the docs page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not page.is_file():
        print(f"no screenshot: {'chromium not installed' if chromium is None else f'{page} missing'}")
        return
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1100,1500", page.as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--page", default="docs/real-size.md", choices=sorted(PAGES))
    parser.add_argument("--work", help="scratch folder (default: a new temporary one, removed after)")
    parser.add_argument("--json", help="write the results here instead of benchmarks/results/")
    args = parser.parse_args()
    real_size = args.page == "docs/real-size.md"
    if real_size:
        try:
            import pyautoattack  # noqa: F401
        except ImportError:
            sys.exit("needs pyautoattack's trained ResNet-18: pip install pyautoattack")
    if not SHARED.is_dir():
        sys.exit(f"needs the datasets in {SHARED}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.work) if args.work else Path(scratch)
        steps = run_blocks(REPO / args.page, root)
        if real_size and not args.json:
            screenshot(root / "work" / "rn18" / "int8" / "report.html", SCREENSHOT)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "results": steps}, indent=2) + "\n")
    else:
        save_result(PAGES[args.page], steps, script="page_walkthrough")
    if any(s["returncode"] for s in steps):
        sys.exit(f"{steps[-1]['step']} failed (exit {steps[-1]['returncode']})")


if __name__ == "__main__":
    main()
