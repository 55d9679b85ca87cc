"""One writer at a time for a folder tgo writes whole (a results store, an export), and who holds it.

Two analyses into one ``--out`` would write the same chunks and done records; two exports
would race on the same partial folder. The first writer holds ``<target>.tgo-lock`` beside the
target: beside, so it exists before the target does and outlives ``--overwrite`` clearing the
target and an export's final rename. Holding it is an exclusive ``flock`` on the open file,
whose text names the holder (pid, host, start time, what it is doing). A second writer is
refused in one line naming that holder.

A killed writer leaves the file, not the lock: the kernel drops a dead process's ``flock``, so
the next writer takes it at once and writes its own name over the stale one (no guess from pids
or times that could break a live lock). The holder deletes the file when it finishes; a writer
that opened the file just before is told by the inode check and opens the new one.

Object stores (``s3://``, ``memory://``) have no such lock: write a results store there from
one client, as their activation stores are created from one (``tgo_store.store.metadata``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator

from tgo_store.errors import TgoError
from tgo_store.store.location import is_local, local_path

LOCK_SUFFIX = ".tgo-lock"


def lock_path(target: str) -> str:
    """The lock file of ``target`` (a local path or ``file://`` URL), beside it."""
    return os.path.abspath(os.path.expanduser(local_path(target))).rstrip("/") + LOCK_SUFFIX


def holder_text(path: str) -> str:
    """Who holds the lock at ``path``, in words (what its file says)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record:
        return "another process (it has not written its name yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("since", 0))))
    return f"{record.get('what', 'a tgo writer')} (pid {record.get('pid', '?')} on {record.get('host', '?')}, since {since})"


@contextlib.contextmanager
def writer_lock(target: str | None, what: str) -> Iterator[None]:
    """Hold the lock of ``target`` while the block runs; TgoError naming the holder when it is taken.

    ``what`` says what this writer does ("tgo analyze", "tgo export"), for the message a second
    one gets. No lock for ``None`` or a non-local target.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one writer at a time is the user's to keep
        fcntl = None
    if target is None or not is_local(str(target)) or fcntl is None:
        yield
        return

    path = lock_path(str(target))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TgoError(f"cannot create the lock file {path} ({exc}); choose a writable --out") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TgoError(f"{target} is being written by {holder_text(path)}; wait for it to finish or "
                           f"choose another --out (a killed writer's lock frees itself: {path})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the holder before us finished and deleted it: open the new one
            same = False
        if same:
            break
        os.close(fd)
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: a waiter that opened this inode sees it gone
        os.close(fd)
