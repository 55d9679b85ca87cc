"""Every key of the one record store (``_tgo/`` inside a store), spelled in one place.

Ingest, analysis and sweeps keep their bookkeeping as small JSON records (``records``) under
the store's ``_tgo/`` prefix; this module is where each kind of record's key is written and
read back, so a reader and a writer can never disagree on a key's spelling.
"""

from __future__ import annotations

import os

RECORD_ROOT = "_tgo"
CREATING = f"{RECORD_ROOT}/creating.json"  # intent record of a store being created (activations or results)
APPENDING = f"{RECORD_ROOT}/appending.json"  # intent record of checkpoints being appended
COMMIT_PREFIX = f"{RECORD_ROOT}/blocks"  # ingest: one commit record per (checkpoint, sample block)
FAILED_PREFIX = f"{RECORD_ROOT}/failed"  # ingest: a block refused after the store was extended
DONE_PREFIX = f"{RECORD_ROOT}/done"  # analysis: one done record per written unit
EXPECTED_WORK = f"{RECORD_ROOT}/expected.json"  # analysis: the units a complete results store holds
SWEEP_STATUS = f"{RECORD_ROOT}/sweep/status.json"  # sweep: what the client last knew


def commit_key(checkpoint_index: int, block: int) -> str:
    return f"{COMMIT_PREFIX}/c{checkpoint_index:06d}/b{block:06d}.json"


def parse_commit_key(key: str) -> tuple[int, int]:
    """(checkpoint index, block) of a commit key; ValueError/IndexError for a foreign key."""
    name = key.rsplit("/", 2)
    return int(name[-2][1:]), int(name[-1][1:].split(".")[0])


def failure_key(checkpoint_index: int) -> str:
    return f"{FAILED_PREFIX}/c{checkpoint_index:06d}.json"


def parse_failure_key(key: str) -> int:
    """The checkpoint index of a failure key; ValueError for a foreign key."""
    return int(key.rsplit("/", 1)[-1][1:].split(".")[0])


def done_unit_key(checkpoint: int, layer: int) -> str:
    """The done record of one (checkpoint, layer) analysis unit."""
    return f"{DONE_PREFIX}/c{checkpoint:06d}_l{layer:06d}.json"


def done_item_key(item: str) -> str:
    """The done record of a multi-slab analysis unit, by its work-item key."""
    return f"{DONE_PREFIX}/{item}.json"


def write_probe_key() -> str:
    """A record written and deleted to prove a store writable (one per process)."""
    return f"{RECORD_ROOT}/write-probe-{os.getpid()}"
