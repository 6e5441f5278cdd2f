"""report.html as a reader sees it: rendered by a real headless Chromium (Debian's `chromium` package), checked
for the headline, the attack table and the embedded plot, and kept as a PNG screenshot."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from deploy_robust.bundle import open_bundle
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.report import write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium (Debian's package)"
)

# A page beside the report that reads what the browser rendered in it (same folder, file access allowed).
PROBE = """<!doctype html><html><body><iframe id="r" src="report.html" width="1200" height="3000"></iframe>
<pre id="out">pending</pre><script>
document.getElementById('r').addEventListener('load', function () {
  var d = this.contentDocument, tables = Array.from(d.querySelectorAll('table'));
  document.getElementById('out').textContent = JSON.stringify({
    headings: Array.from(d.querySelectorAll('h1, h2')).map(function (h) { return h.textContent; }),
    headline: (d.querySelector('strong') || {}).textContent || '',
    table_rows: tables.map(function (t) { return t.querySelectorAll('tbody tr').length; }),
    table_heads: tables.map(function (t) { return t.querySelector('thead').textContent; }),
    images: Array.from(d.images).map(function (i) { return [i.alt, i.complete && i.naturalWidth > 0]; })
  });
});
</script></body></html>"""


def _chromium(*args: str) -> str:
    run = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.fixture(scope="module")
def report_folder(digits_bundles, digits_test, tmp_path_factory):
    copy = open_bundle(shutil.copytree(digits_bundles["plain"].path, tmp_path_factory.mktemp("browser") / "b"))
    doc = run_verify(copy, digits_test, ThreatModel("linf", 0.1), VerifyOptions(n=48, suite="quick", resume=False))
    write(copy, doc)
    return copy.path, doc


def test_the_rendered_report_shows_the_headline_the_attack_table_and_the_plot(report_folder):
    folder, doc = report_folder
    (folder / "probe.html").write_text(PROBE)
    dom = _chromium("--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                    (folder / "probe.html").as_uri())  # fmt: skip
    seen = json.loads(dom.split('<pre id="out">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert "Headline (engine E)" in seen["headings"] and "Attacks" in " ".join(seen["headings"])
    assert f"{100 * doc['robust_accuracy']:.2f}%" in seen["headline"]
    attack_table = next(i for i, head in enumerate(seen["table_heads"]) if "attack" in head.lower())
    assert seen["table_rows"][attack_table] >= len(doc["attacks"])
    assert seen["images"] and all(loaded for _, loaded in seen["images"])  # the embedded eps curve decoded


def test_a_screenshot_of_the_report_is_a_real_page(report_folder, tmp_path):
    import matplotlib.image

    folder, _ = report_folder
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,1600", (folder / "report.html").as_uri())
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()
    assert 0.005 < dark < 0.5  # text and a plot on a light page, not a blank or an error screen
    assert np.unique(pixels.reshape(-1, pixels.shape[-1])[::97], axis=0).shape[0] > 20  # many colours: the plot
