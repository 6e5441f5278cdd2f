"""docs/real-size.md runs as written on pyautoattack's trained ResNet-18, and each step leaves what it says.

It runs every block of the page (benchmarks/page_walkthrough.py): two exports, info, eval, two benches,
a 100-point verify and a 10-minute tune; about 25 minutes on 2 cores, so it is marked slow (`make test-all`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "page_walkthrough.py"


def test_the_walkthrough_finds_every_step_of_the_page_and_of_the_readme(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from page_walkthrough import page_blocks

    from tests.test_readme import readme_blocks

    blocks = page_blocks((REPO / "docs" / "real-size.md").read_text())
    steps = [step for step, _, _ in blocks]
    assert [s.split(".")[0] for s in dict.fromkeys(steps)] == [str(k) for k in range(1, 8)]
    assert blocks[0][2].startswith("cp ") and all(language == "sh" for _, language, _ in blocks)
    assert sum("deploy-robust export" in code for _, _, code in blocks) == 2
    readme = (REPO / "README.md").read_text()
    assert [code.strip() for _, _, code in page_blocks(readme)] == [code.strip() for _, code in readme_blocks(readme)]


@pytest.mark.slow
def test_the_real_size_walkthrough_runs_and_each_step_leaves_its_results(tmp_path):
    pytest.importorskip("pyautoattack", reason="the walkthrough's model comes with pyautoattack")
    if not (REPO.parent / "shared" / "data").is_dir():
        pytest.skip("the walkthrough reads ../shared/data")
    out = tmp_path / "steps.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--work", str(tmp_path), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    steps = json.loads(out.read_text())["results"]
    assert done.returncode == 0, "\n".join(steps[-1]["output_tail"]) if steps else done.stderr
    printed = {s["step"]: "\n".join(s["output_tail"]) for s in steps}
    rn18 = tmp_path / "work" / "rn18"
    assert "no normalization" in printed["2. Export FP32 and INT8"]  # raw [0, 1] inputs, as the weights were trained
    assert (rn18 / "int8" / "manifest.json").is_file()
    info = printed["3. Look inside"]
    assert "int8" in info and "conv" in info.lower() and "no normalization" in info
    accuracy = _percent_after("accuracy", printed["4. Accuracy on the engine, against the torch model"])
    assert accuracy > 90.0  # the trained weights score 93.8% in torch
    benches = printed["5. Speed on ONNX Runtime and OpenVINO"]
    assert "ort-cpu" in benches and "openvino" in benches
    assert json.loads((rn18 / "int8" / "bench.json").read_text())
    runs = [r for r in (rn18 / "int8" / "runs").iterdir() if "linf" in r.name]
    verified = json.loads((runs[0] / "verify.json").read_text())
    assert len(runs) == 1 and verified["data"]["n"] == 100
    assert 0.0 < verified["robust_accuracy"] < accuracy / 100 and not verified["flags"], verified["flags"]
    frontier = json.loads((rn18 / "tuned" / "frontier.json").read_text())
    assert frontier["measured"] and (rn18 / "tuned" / "best" / "manifest.json").is_file()


def _percent_after(word: str, text: str) -> float:
    """The first percentage printed after `word` in `text`."""
    import re

    match = re.search(rf"{word}\D*?(\d+(?:\.\d+)?)%", text)
    assert match, f"no '{word} ...%' in:\n{text}"
    return float(match.group(1))
