"""The measured tables of README.md and docs/ are what benchmarks/results/ holds, each naming its CPU."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_results_block_is_rendered_from_its_results_file():
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "render_tables.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_every_results_block_names_the_machine_it_was_measured_on():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    blocks = [
        m
        for page in pages
        for m in re.finditer(r"<!-- results:(\w+) -->\n(.*?)<!-- /results:\1 -->", page.read_text(), re.S)
    ]
    assert len(blocks) >= 10
    for block in blocks:
        assert "_Measured on " in block.group(2) and " cores, " in block.group(2), block.group(1)


def test_the_docs_pages_link_back_and_the_readme_links_every_page():
    readme = (REPO / "README.md").read_text()
    for page in sorted((REPO / "docs").glob("*.md")):
        assert "](../README.md)" in page.read_text(), page.name
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    assert len(readme.splitlines()) < 300, "keep the README to what a newcomer needs; details go to docs/"
