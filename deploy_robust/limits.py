"""Limits on what a file may declare before anything is allocated, and the checks that apply them.

A 546-byte `.npz` can declare a 5.7 GiB array and a manifest can ask for a batch of 10^9;
every size read from a file is checked here against the file's real size and these limits
first, so bad input is a one-line UserError instead of a MemoryError.
"""

from __future__ import annotations

import math
import pickletools
from typing import Any

from deploy_robust.errors import UserError, first_line

MAX_ARRAY_BYTES = 16 << 30  # one dataset array (decoded)
MAX_EXPANSION = 200  # decoded / stored bytes of a compressed part above ZIP_SMALL
ZIP_SMALL = 64 << 20  # parts that decode to less than this are never suspicious
MAX_IMAGE_PIXELS = 50_000_000  # one image in an image folder
MAX_DIM = 16_384  # one input dimension (C, H or W)
MAX_INPUT_ELEMENTS = 1 << 26  # C*H*W of one input
MAX_CLASSES = 1_000_000
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1


def check_declared_size(nbytes: int, stored_bytes: int, what: str, *, compressed: bool) -> None:
    """`nbytes` a part decodes to, against what is stored: no bombs, nothing over MAX_ARRAY_BYTES."""
    if nbytes > MAX_ARRAY_BYTES:
        raise UserError(f"{what} declares {nbytes / 2**30:.1f} GiB, over the {MAX_ARRAY_BYTES >> 30} GiB limit")
    if compressed and nbytes > ZIP_SMALL and nbytes > MAX_EXPANSION * max(stored_bytes, 1):
        raise UserError(
            f"{what} would expand {stored_bytes} stored bytes to {nbytes}: refusing a "
            f"decompression bomb (limit {MAX_EXPANSION}x above {ZIP_SMALL >> 20} MiB)"
        )


def finite_number(value: Any, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A real (not bool) finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{what} must be a number; got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise UserError(f"{what} must be a finite number in [{low:g}, {high:g}]; got {value!r}")
    return number


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """An int (not bool, not float) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{what} must be a whole number in [{low}, {high}]; got {value!r}")
    return value


def check_pickle_memo(raw: bytes, what: str) -> None:
    """Walk a pickle's opcodes without running them; refuse a memo index the stream cannot reach.

    Both CPython's and TorchScript's C++ unpickler size the memo by the largest index a PUT names:
    `LONG_BINPUT 175399797` in a 9 KB CIFAR batch allocates 2.7 GiB, `LONG_BINPUT 2**28` in a
    TorchScript `data.pkl` 4.3 GiB. Each PUT takes at least two bytes, so an honest index is below
    the stream's length."""
    try:
        for opcode, argument, _ in pickletools.genops(raw):
            if opcode.name.endswith(("PUT", "GET")) and isinstance(argument, int) and argument > len(raw):
                raise UserError(
                    f"{what}: its pickle names memo slot {argument} in a {len(raw)}-byte stream "
                    "(a forged index that would make the unpickler allocate gigabytes)"
                )
    except UserError:
        raise
    except Exception as e:  # genops on untrusted bytes: ValueError for a bad or truncated opcode
        raise UserError(f"{what}: not a valid pickle stream ({type(e).__name__}: {first_line(e)})") from None
