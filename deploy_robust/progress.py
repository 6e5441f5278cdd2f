"""Progress on stderr for every step that can take more than a few seconds: a bar on a terminal, plain lines
with an ETA elsewhere (a pipe, a log file, CI), nothing with --quiet or --json.

Plain lines come at a bounded rate: the first once the step has run FIRST_LINE_S, then at most one every
EVERY_S, and a closing line if any was printed. A step that ends sooner prints nothing, so quick commands and
their one-line errors stay as they are. A line gives an ETA once ETA_FROM of its step is done.

The same progress points are where a deadline stops work (`deadline`, used by tune's --time-budget): past it,
the next point raises OutOfTime, shown or not. Inner loops too fine to show (an attack's steps) call
`check_deadline` alone. Without a deadline the check is one comparison.
"""

from __future__ import annotations

import contextlib
import sys
import time
import weakref
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_quiet = False
FIRST_LINE_S = 5.0
EVERY_S = 15.0
ETA_FROM = 0.02  # the share of a step done before its lines give an ETA


_deadline: float | None = None  # time.monotonic() past which work stops at its next progress point


class OutOfTime(Exception):
    """Work passed the deadline set with `deadline`; raised at its next progress point."""


@contextlib.contextmanager
def deadline(at: float | None):
    """Within the block, progress points past `at` (a time.monotonic() value; None: no deadline) raise OutOfTime."""
    global _deadline
    before, _deadline = _deadline, at
    try:
        yield
    finally:
        _deadline = before


# the plain-line steps under way, innermost last (for heartbeats); weak, so a step an exception abandoned
# unclosed goes away with its frame
_open_lines: list[weakref.ref] = []


_step_sink: Callable[[int], None] | None = None  # who counts the steps inside the step under way (verify's attacks)


def count_steps(sink: Callable[[int], None] | None) -> None:
    """From now on `check_deadline(points)` hands `points` to `sink` (None: to nobody), so an attack's iterations
    move the progress of the step that runs it, not only its end."""
    global _step_sink
    _step_sink = sink


def check_deadline(points: int = 0) -> None:
    """A point inside a step (an attack's iteration, a GPTQ block): past the deadline it raises OutOfTime; on a
    long step shown as plain lines it also says, at the same bounded rate, that the step is still going.
    `points`: how many points this iteration moves one step (handed to the `count_steps` sink, if one is set)."""
    _raise_if_past()
    if points and _step_sink is not None:
        _step_sink(points)
    if _phase is not None:
        _phase.heartbeat()
    while _open_lines and _open_lines[-1]() is None:
        _open_lines.pop()
    if _open_lines:
        _open_lines[-1]().heartbeat()


def _raise_if_past() -> None:
    if _deadline is not None and time.monotonic() > _deadline:
        raise OutOfTime()


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether progress is shown at all (bars or lines)."""
    return not _quiet


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Lines:
    """Plain progress lines for a step of `total` units (None: unknown), at a bounded rate; `clock` is injectable
    for tests. `weighted`: the units are a cost estimate, not countable items (verify weighs each attack by its
    passes per point), so lines show the percentage alone; `doing` names what runs now."""

    def __init__(self, total: int | None, desc: str, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] | None = None, weighted: bool = False) -> None:  # fmt: skip
        self.total, self.desc, self.clock, self.weighted = total, desc or "working", clock, weighted
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = self.clock()
        self.done = 0
        self.free = 0  # units credited without work being done now (resumed from a checkpoint, spared): not in the rate
        self.now = ""
        self.last_line: float | None = None
        _open_lines.append(weakref.ref(self))

    def doing(self, what: str) -> None:
        self.now = what

    def _write_if_due(self, suffix: str = "") -> None:
        """A line, if the first is due (FIRST_LINE_S after the start) or the next (EVERY_S after the last)."""
        now = self.clock()
        since, due = (self.started, FIRST_LINE_S) if self.last_line is None else (self.last_line, EVERY_S)
        if now - since >= due:
            self.last_line = now
            self.write(self._line(now) + suffix)

    def heartbeat(self) -> None:
        """Between updates: the same line, if one is due (a unit of work can take minutes on a real model)."""
        self._write_if_due(f" ({self.now})" if self.now else " (working on the next)")

    def update(self, n: int = 1, free: bool = False) -> None:
        """`n` units done; `free`: credited without being worked now (a resumed checkpoint, work found unneeded), so
        they move the share but not the rate the ETA extrapolates."""
        _raise_if_past()
        if _phase is not None:
            _phase.heartbeat()
        self.done += n
        self.free += n if free else 0
        self._write_if_due(f" ({self.now})" if self.now else "")

    def _line(self, now: float) -> str:
        elapsed = now - self.started
        if not self.total:
            return f"{self.desc}: {self.done} done, {_duration(elapsed)}"
        share = f"{100 * self.done / self.total:.0f}%"
        line = f"{self.desc}: {share if self.weighted else f'{self.done}/{self.total} ({share})'}, {_duration(elapsed)}"
        worked = self.done - self.free
        if ETA_FROM * self.total <= worked and self.done < self.total:  # before, an extrapolation is mostly noise
            line += f", about {_duration(elapsed / worked * (self.total - self.done))} left"
        return line

    def close(self) -> None:
        _open_lines[:] = [r for r in _open_lines if r() is not None and r() is not self]
        if self.last_line is not None:
            self.write(f"{self.desc}: done in {_duration(self.clock() - self.started)}")


class _NoBar:
    def update(self, n: int = 1, free: bool = False) -> None:
        check_deadline()

    def doing(self, what: str) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int | None, desc: str = "", weighted: bool = False):
    """Progress advanced by hand (`update(n)`, `doing(what)`; `close()` at the end), for work counted finer than a
    loop's items (verify: every attack on every batch, weighted by its cost); a no-op with --quiet."""
    if not enabled():
        return _NoBar()
    if not on_terminal():
        return Lines(total, desc, weighted=weighted)
    return _Bar(total, desc, weighted)


class _Bar:
    """A tqdm bar whose updates are also deadline points."""

    def __init__(self, total: int | None, desc: str, weighted: bool = False) -> None:
        from tqdm import tqdm

        form = "{l_bar}{bar}| {elapsed}<{remaining}{postfix}" if weighted else None  # no unit counts
        self.shown = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, bar_format=form)

    def update(self, n: int = 1, free: bool = False) -> None:  # tqdm's smoothed rate soon forgets a free jump
        check_deadline()
        self.shown.update(n)

    def doing(self, what: str) -> None:
        self.shown.set_postfix_str(what)

    def close(self) -> None:
        self.shown.close()


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """`items`, with progress shown as they are consumed (each item a deadline point)."""
    if not enabled():
        return items if _deadline is None else _counted(items, _NoBar())
    return _counted(items, bar(total, desc))


def _counted(items: Iterable[T], shown) -> Iterator[T]:
    try:
        for item in items:
            _raise_if_past()
            yield item
            shown.update()
    finally:
        shown.close()


class _Phase:
    """A named step of a longer run (tune's phases): its line is printed once the step has lasted FIRST_LINE_S,
    from the next progress point, so quick steps (and a one-line error right after them) print nothing."""

    def __init__(self, message: str) -> None:
        self.message, self.started, self.printed = message, time.monotonic(), False

    def heartbeat(self) -> None:
        if not self.printed and time.monotonic() - self.started >= FIRST_LINE_S:
            self.printed = True
            print(self.message, file=sys.stderr, flush=True)


_phase: _Phase | None = None


def phase(message: str | None) -> None:
    """The step a run is now in (None: none); shown on stderr unless --quiet, once it has lasted a few seconds."""
    global _phase
    _phase = _Phase(message) if message is not None and enabled() else None
