"""Temporary files of writes a kill cut short: found, and removed where no live writer owns them.

Local writes are atomic by a temporary file and a rename. zarr-python's ``LocalStore`` writes
``<key without its suffix>.<32 hex>.partial`` (``zarr.storage._local._atomic_write``), tgo's
records ``<key>.<pid>.tmp`` (``tgo_store.store.records``). A kill -9 between the two leaves the
temporary behind: up to a whole shard (~32 MB) per write in flight. Object stores (s3://,
memory://) write by one PUT and leave none, so only local stores are searched.

A temporary is garbage (its write is uncommitted and no live writer will finish it):

- a record's, once the process named in it is gone;
- a block shard's (``activations`` / ``gradients`` chunk keys), once its block is committed
  (committed blocks are never rewritten), or when the caller is about to rewrite that block
  (``remove_block_temporaries``, before the block's shards are discarded);
- any other (metadata, coordinates), while the caller holds the metadata lock: those are
  written only under it.

A block shard temporary of an uncommitted block may belong to a writer that is still running
(a sweep worker, a second ``tgo ingest``), so it is left for the write of that block.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from tgo_store.store import schema as S
from tgo_store.store.records import RecordStore

PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr LocalStore: path.with_suffix(f".{uuid4().hex}.partial")
RECORD_TMP = re.compile(r"\.(?P<pid>\d+)\.tmp$")  # RecordStore.put_bytes: f"{path}.{pid}.tmp"
BLOCK_ARRAYS = (S.ACTIVATIONS, S.GRADIENTS)


@dataclass(frozen=True)
class Temporaries:
    """What a sweep found: the keys it removed and the keys it left (a live writer may own them), with bytes."""

    removed: tuple[str, ...] = ()
    removed_bytes: int = 0
    left: tuple[str, ...] = ()
    left_bytes: int = 0


def find_temporaries(records: RecordStore) -> list[str]:
    """Keys of every temporary file under a local store (none elsewhere), sorted."""
    if not records.local or not os.path.isdir(records.root):
        return []
    found = []
    for folder, _dirs, files in os.walk(records.root):
        for name in files:
            if PARTIAL.search(name) or RECORD_TMP.search(name):
                found.append(os.path.relpath(os.path.join(folder, name), records.root).replace(os.sep, "/"))
    return sorted(found)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def block_of(key: str) -> tuple[int, int] | None:
    """(checkpoint index, sample block) of a block shard key or its temporary; None for any other key."""
    parts = key.split("/")
    if len(parts) != 7 or parts[0] not in BLOCK_ARRAYS or parts[1] != "c":
        return None
    try:
        return int(parts[2]), int(parts[4])
    except ValueError:
        return None


def is_garbage(key: str, committed: Collection[tuple[int, int]], metadata_locked: bool) -> bool:
    """Whether a temporary's write can no longer complete (see the module docstring)."""
    match = RECORD_TMP.search(key)
    if match:
        return _process_gone(int(match.group("pid")))
    block = block_of(key)
    return block in committed if block is not None else metadata_locked


def _size(records: RecordStore, key: str) -> int:
    try:
        return os.path.getsize(records.path(key))
    except OSError:
        return 0


def sweep_temporaries(records: RecordStore, committed: Collection[tuple[int, int]], *,
                      metadata_locked: bool, remove: bool = True) -> Temporaries:
    """Remove (with ``remove``) the garbage temporaries of a store; report the ones left.

    A store that cannot be written (read-only folder) keeps them and reports them as left.
    """
    removed, left = [], []
    for key in find_temporaries(records):
        size = _size(records, key)
        if remove and is_garbage(key, committed, metadata_locked):
            try:
                records.delete(key)
                removed.append((key, size))
                continue
            except OSError:
                pass
        left.append((key, size))
    return Temporaries(tuple(k for k, _ in removed), sum(s for _, s in removed),
                       tuple(k for k, _ in left), sum(s for _, s in left))


def remove_block_temporaries(records: RecordStore, shard_keys: Sequence[str]) -> None:
    """Remove the temporaries of the shards the caller is about to rewrite (one folder listing per shard)."""
    if not records.local:
        return
    for key in shard_keys:
        folder, _, name = key.rpartition("/")
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.listdir(records.path(folder)):
                if entry.startswith(name + ".") and PARTIAL.search(entry) and entry[len(name):].count(".") == 2:
                    records.delete(f"{folder}/{entry}")
