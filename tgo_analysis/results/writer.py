"""An analysis into a results store is its one writer: it holds the store's lock while it runs,
and a full disk under it is named (``tgo_store.no_space``), not reported as a bug."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tgo_store.no_space import naming_full_disk
from tgo_store.store.writer_lock import writer_lock

F = TypeVar("F", bound=Callable[..., Any])


def results_writer(fn: F) -> F:
    """Wrap ``fn(..., out=URL)``: the lock of ``out`` for the whole call (a second analysis into
    the same store is refused in one line naming the first), and ENOSPC as a one-line error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        with naming_full_disk(out), writer_lock(out, "an analysis (tgo analyze)"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
