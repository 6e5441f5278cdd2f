"""Power sampling on a Jetson with `tegrastats`, so a benchmark can report images per joule."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

# Total board input rails by module generation: Orin (VDD_IN), Xavier/Nano (POM_5V_IN).
_RAIL = re.compile(r"\b(?:VDD_IN|POM_5V_IN)\s+(\d+)mW")


def parse_milliwatts(line: str) -> float | None:
    match = _RAIL.search(line)
    return float(match.group(1)) if match else None


class TegrastatsSampler:
    """Start/stop around a timed loop; `stop()` returns the average input power in watts."""

    def __init__(self, interval_ms: int = 100) -> None:
        if not shutil.which("tegrastats"):
            raise RuntimeError("tegrastats not found: power sampling needs a Jetson")
        self.interval_ms = interval_ms
        self._readings: list[float] = []
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._readings = []
        self._process = subprocess.Popen(
            ["tegrastats", "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process and self._process.stdout
        for line in self._process.stdout:
            mw = parse_milliwatts(line)
            if mw is not None:
                self._readings.append(mw)

    def stop(self) -> dict[str, float]:
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=5)
        if self._thread:
            self._thread.join(timeout=5)
        if not self._readings:
            return {}
        return {"watts": sum(self._readings) / len(self._readings) / 1000.0, "samples": float(len(self._readings))}
