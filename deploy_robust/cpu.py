"""What this CPU can do that decides how integer graphs run: its flags, and whether ONNX Runtime's
x86 u8 x s8 kernels sum in int16 (and saturate) here.

On x86 CPUs without VNNI or AMX, ONNX Runtime's MLAS U8S8 kernels multiply with `vpmaddubsw`,
which adds pairs of u8 * s8 products into int16 with saturation: 2 * 255 * 127 = 64,770 does
not fit, 2 * 255 * 63 = 32,130 does. VNNI (`vpdpbusd`) and AMX accumulate in int32 directly;
non-x86 CPUs use other kernels. Measured on an AVX2 EPYC: full-range weights put logits off by
up to 44 (see exporters/profiles.py).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def u8s8_saturates(flags: frozenset[str] | None = None, x86: bool | None = None) -> bool:
    """True where ONNX Runtime's u8 x s8 kernels sum pairs in int16 (x86 without VNNI or AMX)."""
    flags = cpu_flags() if flags is None else flags
    x86 = is_x86() if x86 is None else x86
    return x86 and not any(f in flags for f in INT8_DOT_PRODUCT_FLAGS)
