"""The loader fuzz campaign (tests/security/fuzz.py) at the `make test` size and at the slow size, each in its own
child process so the peak RSS is the campaign's own: cases, failures (anything but UserError, or an edited signed
cache accepted), how many mutated inputs loaded or were refused, per format, and the peak RSS.

    python benchmarks/fuzz_loaders.py            # seed 0 x 250 examples, then seeds 1-3 x 1000
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from machine import save_result

REPO = Path(__file__).resolve().parent.parent


def campaign(examples: int, seed: int) -> dict:
    command = [sys.executable, "-m", "tests.security.fuzz", "--examples", str(examples), "--seed", str(seed)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "examples": examples,
        "seed": seed,
        "cases": result["cases"],
        "failures": result["failure_count"],
        "failure_samples": result["failures"],
        "peak_rss_mib": round(result["peak_rss_mib"]),
        "seconds": result["seconds"],
        "by_format": result["by_format"],
    }


def main() -> None:
    runs = [campaign(250, 0)] + [campaign(1000, seed) for seed in (1, 2, 3)]
    for run in runs:
        print(
            f"seed {run['seed']} x {run['examples']}: {run['cases']} cases, {run['failures']} failures, "
            f"peak {run['peak_rss_mib']} MiB, {run['seconds']} s"
        )
    save_result(
        "fuzz_loaders",
        {
            "make_test_campaign": runs[0],
            "slow_campaigns": runs[1:],
            "peak_rss_limit_mib": 1024,
            "input_size_limit_bytes": 1 << 20,
        },
    )


if __name__ == "__main__":
    main()
