"""Every loader under property-based fuzzing: only UserError escapes, and memory stays bounded.

The campaign runs in a child process so its peak RSS is its own (tests.security.fuzz prints it).
Beyond byte edits, the campaign rewrites pickle opcodes inside archives (a forged memo index or size), edits
ONNX graphs structurally (fp32 and int8 Q/DQ), and edits the signed caches (tune's measurements, verify's
resume batches), where an edit that is accepted with changed contents is a failure too.
`make test` runs about 3,300 mutated inputs (~15 s on 2 cores); the `slow` campaign 3 x 13,000.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

PEAK_RSS_LIMIT_MIB = 1024


def _campaign(examples: int, seed: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tests.security.fuzz", "--examples", str(examples), "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(results: dict, minimum_cases: int) -> None:
    print(
        f"fuzz: {results['cases']} cases, {results['failure_count']} failures, peak RSS "
        f"{results['peak_rss_mib']:.0f} MiB, {results['seconds']} s"
    )
    assert results["cases"] >= minimum_cases
    assert results["failure_count"] == 0, results["failures"]
    assert results["peak_rss_mib"] < PEAK_RSS_LIMIT_MIB


def test_fuzzed_inputs_raise_only_user_errors():
    _check(_campaign(examples=250, seed=0), minimum_cases=3000)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_inputs_raise_only_user_errors_large_campaign(seed):
    _check(_campaign(examples=1000, seed=seed), minimum_cases=13000)
