"""Progress bars on a terminal; silence in --json mode, in CI and when output is piped."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty() and not os.environ.get("CI")


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    if not enabled():
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, leave=False, file=sys.stderr)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str = ""):
    """A bar advanced by hand (`update()`; `close()` at the end), for work counted finer than a loop's items
    (verify: every attack on every batch); a no-op where bars are off."""
    if not enabled():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
