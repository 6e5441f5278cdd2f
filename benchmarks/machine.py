"""What machine and software a benchmark ran on; recorded with every result file."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "logical_cores": os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
        wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "avx512_bf16", "f16c")
        info["flags"] = [f for f in wanted if f in flags]
    try:
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def machine_info() -> dict:
    from deploy_robust.bundle.manifest import tool_versions

    doc = {"cpu": cpu_info(), "os": platform.platform(), "tools": tool_versions()}
    try:
        import torch

        if torch.cuda.is_available():
            doc["gpu"] = {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
    except ImportError:
        pass
    return doc


def save_result(name: str, results, **extra) -> Path:
    """Write benchmarks/results/NAME.json: the results with the command that made them and the machine."""
    import json
    import sys

    doc = {"benchmark": name, "command": " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]]),
           "machine": machine_info(), "results": results, **extra}
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return out
