"""Per-block commit records and failure records: written and read back.

Commit protocol: a (checkpoint, sample block) block is written as whole shards (one per
layer, ``writer.write_block``), and only after every shard write has returned is a small
commit record written (``record_keys.commit_key``, a key zarr and xarray ignore). A record is
one object written once, never a read-modify-write of shared JSON, so processes and workers
that write different blocks never race. A record names the checkpoint's sha256; a record
that is missing, unreadable or names another file means "not written", and the block is
rewritten whole on resume. A kill -9 therefore leaves at worst a partial shard without a record.
"""

from __future__ import annotations

from tgo_store.store.record_keys import (
    COMMIT_PREFIX,
    FAILED_PREFIX,
    commit_key,
    failure_key,
    parse_commit_key,
    parse_failure_key,
)
from tgo_store.store.records import RecordStore


def write_commit(records: RecordStore, checkpoint_index: int, block: int, record: dict) -> None:
    """Write a block's commit record (atomic: temp file, fsync, rename on local stores)."""
    records.put(commit_key(checkpoint_index, block), record)


def read_commits(records: RecordStore) -> dict[tuple[int, int], dict]:
    """Every readable commit record, by (checkpoint index, block); torn or foreign ones are skipped."""
    found: dict[tuple[int, int], dict] = {}
    for key, record in records.items(COMMIT_PREFIX):
        try:
            found[parse_commit_key(key)] = dict(record)
        except (ValueError, IndexError, TypeError):
            continue
    return found


def record_failure(records: RecordStore, checkpoint_index: int, record: dict) -> None:
    """Say why a block of a checkpoint was refused after the store was extended."""
    records.put(failure_key(checkpoint_index), record)


def clear_failure(records: RecordStore, checkpoint_index: int, block: int) -> None:
    """Drop a checkpoint's failure record once its refused ``block`` is written."""
    if (records.get(failure_key(checkpoint_index)) or {}).get("block") == block:
        records.delete(failure_key(checkpoint_index))


def read_failures(records: RecordStore) -> dict[int, dict]:
    """Blocks refused after the store was extended (e.g. NaN/Inf past the one-batch check), by checkpoint."""
    found: dict[int, dict] = {}
    for key, record in records.items(FAILED_PREFIX):
        try:
            found[parse_failure_key(key)] = dict(record)
        except (ValueError, TypeError):
            continue
    return found
