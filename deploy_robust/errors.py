"""The two kinds of failure a user sees, and their exit codes.

`UserError` is bad input (a missing file, a model that does not fit its weights, a
dataset with NaN...): the CLI prints its one-line message and exits 2. `GateFailed` is a
check the user asked for that did not pass (exit 1). Anything else is a bug and keeps
its traceback.
"""

import sys

EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_WORKER_FAILED = 3  # `--workers`: a worker process died (killed, crashed); its finished work is kept


class UserError(Exception):
    """Bad input or usage: one clear line for the user, exit code 2."""

    exit_code = EXIT_BAD_INPUT


class GateFailed(Exception):
    """A requested gate (accuracy, agreement, robustness) did not pass: exit code 1."""

    exit_code = EXIT_GATE_FAILED


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(error).strip().splitlines()
    return text[0][:limit] if text else type(error).__name__


_warned: set[str] = set()


def warn(message: str) -> None:
    """One line on stderr, once per process for the same message: something works, but not as the user may think."""
    if message not in _warned:
        _warned.add(message)
        print(f"deploy-robust: warning: {message}", file=sys.stderr)
