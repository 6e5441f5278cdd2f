"""What a measurement ran on: CPU and its vector extensions, GPU, Jetson power mode, library versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from deploy_robust.cpu import cpu_flags, u8s8_saturates

_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "avx512_bf16",
    "f16c",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        for line in text.splitlines():
            key = line.split(":", 1)[0].strip()
            if key in ("model name", "Model", "Hardware") and "model" not in info:
                info["model"] = line.split(":", 1)[1].strip()
        flags = cpu_flags()
        info["flags"] = [f for f in _CPU_FLAGS if f in flags]
        info["int8_dot_product"] = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))
        info["ort_u8s8_saturates"] = u8s8_saturates()
    return info


def gpu_info() -> dict[str, Any] | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        info: dict[str, Any] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    except ImportError:
        return None
    if shutil.which("nvidia-smi"):
        query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"
        try:
            out = (
                subprocess.run(
                    ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                .stdout.strip()
                .splitlines()
            )
            if out:
                info.update(dict(zip(query.split(","), (v.strip() for v in out[0].split(",")))))
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def jetson_info() -> dict[str, Any] | None:
    """L4T release and nvpmodel power mode on a Jetson (detected by /etc/nv_tegra_release)."""
    release = Path("/etc/nv_tegra_release")
    if not release.exists():
        return None
    info: dict[str, Any] = {"l4t": release.read_text(errors="replace").splitlines()[0].strip()}
    if shutil.which("nvpmodel"):
        try:
            info["power_mode"] = subprocess.run(
                ["nvpmodel", "-q"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def library_versions() -> dict[str, str]:
    from deploy_robust.bundle.manifest import tool_versions

    versions = tool_versions()
    try:
        import tensorrt

        versions["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return versions


def machine_info() -> dict[str, Any]:
    doc: dict[str, Any] = {"cpu": cpu_info(), "os": platform.platform(), "tools": library_versions()}
    gpu, jetson = gpu_info(), jetson_info()
    if gpu:
        doc["gpu"] = gpu
    if jetson:
        doc["jetson"] = jetson
    return doc
