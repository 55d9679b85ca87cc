"""A full disk is an ordinary failure: one line naming where, and that a re-run resumes.

Every write of an ingest is atomic (a temporary file renamed into place) and a block counts
only once its commit record is written, so a write cut short by ENOSPC loses nothing: after
space is freed, the same command resumes where it stopped. ``named_disk_full`` turns the
OSError (wherever in ingest it is raised: a shard, a record, the metadata) into that one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from tgo_store.errors import TgoError
from tgo_store.store.location import is_local, local_path

FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL


def disk_full_error(exc: OSError, url: str) -> TgoError:
    """The one line of a full disk (or quota) while writing the store at ``url``."""
    where = os.path.abspath(local_path(url)) if is_local(url) else url
    return TgoError(f"no space left on {where} ({os.strerror(exc.errno or errno.ENOSPC)}); free space there or "
                    "choose a store on a larger disk, then re-run the same command: it resumes where it stopped "
                    "and nothing written is lost")


@contextlib.contextmanager
def named_disk_full(url: str) -> Iterator[None]:
    """Raise ``disk_full_error`` for an ENOSPC/EDQUOT OSError raised inside."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(exc, url) from exc
        raise
