"""The one exception type a user sees: a one-line message that names the problem and the fix."""

from __future__ import annotations


class TgoError(Exception):
    """A user mistake or an unusable input.

    The message is one line: what is wrong, then what to do about it. The CLI prints it as
    ``tgo: error: <message>`` on stderr and exits with status 2, without a traceback.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
