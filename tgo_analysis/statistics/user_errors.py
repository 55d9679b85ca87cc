"""A kernel's ValueError worded as the user's TgoError: kernels state the fact, statistics the fix.

Kernels are pure numpy and know no flags; a statistic calls one inside ``user_error(fix)`` and
a bad option or input reaches the user as one line: the kernel's fact, then the flag to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tgo_store.errors import TgoError


@contextmanager
def user_error(fix: str) -> Iterator[None]:
    """Turn a ValueError raised inside the block into ``TgoError("<fact>; <fix>")``."""
    try:
        yield
    except ValueError as exc:
        raise TgoError(f"{exc}; {fix}") from None
