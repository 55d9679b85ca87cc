"""The one exception type a user sees: a one-line message that names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TgoError(Exception):
    """A user mistake or an unusable input.

    The message is one line: what is wrong, then what to do about it. The CLI prints it as
    ``tgo: error: <message>`` on stderr and exits with status 2, without a traceback.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the one closest choice (difflib), or "" when none is close: a misspelled
    name gets one suggestion, not the list of every name."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def nearest_step(step: int, steps: Iterable[int]) -> str:
    """"; the nearest is step N" among the checkpoints' training steps (a step is a number: difflib does not apply)."""
    values = [int(s) for s in steps]
    return f"; the nearest is step {min(values, key=lambda s: abs(s - int(step)))}" if values else ""
