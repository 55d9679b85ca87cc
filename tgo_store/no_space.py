"""A full disk is an ordinary failure: one line naming where, and that a re-run resumes.

Every writer of tgo (ingest, analysis, export, report) keeps what it finished when a write
fails (an ingest's writes are atomic and a block counts only once its commit record is written),
so the answer to ENOSPC is always the same: free space, run the same command again.
``no_space_error`` is the one place that says so; library entry points name their output with
``naming_full_disk`` and the CLI's error funnel (``tgo_app.cli.app``) catches any other.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from tgo_store.errors import TgoError

# zarrs (zarr's Rust codec pipeline) reports a full disk as a RuntimeError carrying the OS message
RUST_FULL_DISK = (f"(os error {errno.ENOSPC})", f"(os error {errno.EDQUOT})")


def _full_disk(exc: BaseException | None) -> OSError | None:
    """The ENOSPC (or EDQUOT) OSError in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        if isinstance(exc, RuntimeError) and any(tail in str(exc) for tail in RUST_FULL_DISK):
            code = errno.EDQUOT if f"(os error {errno.EDQUOT})" in str(exc) else errno.ENOSPC
            return OSError(code, str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _shown(path: str) -> str:
    """A local output as an absolute path (what a user types to free space), a URL as given."""
    import os

    from tgo_store.store.location import is_local, local_path

    return os.path.abspath(local_path(path)) if is_local(path) else path


def no_space_error(exc: BaseException, path: str | None = None) -> TgoError | None:
    """The one-line error for a full disk behind ``exc`` (None when ``exc`` is something else);
    ``path`` names the output being written, else the file the OSError names."""
    if isinstance(exc, TgoError) and str(exc).startswith("no space left"):
        return None  # named already (a TgoError caused by ENOSPC, such as "cannot write ...", is renamed)
    full = _full_disk(exc)
    if full is None:
        return None
    where = _shown(path) if path else (full.filename or "the output's disk")
    quota = " (disk quota exceeded)" if full.errno == errno.EDQUOT else ""
    return TgoError(f"no space left on {where}{quota}; free some space (or choose another place), then re-run the "
                    "same command: it resumes where it stopped")


@contextlib.contextmanager
def naming_full_disk(path: str | None) -> Iterator[None]:
    """Turn a full disk while the block writes ``path`` into the one-line error naming ``path``."""
    try:
        yield
    except Exception as exc:
        named = no_space_error(exc, path)
        if named is None:
            raise
        raise named from exc
