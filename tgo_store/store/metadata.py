"""The store's metadata: created and grown so that a kill -9 at any instant is recoverable.

Metadata changes are many small writes (the group, the arrays, each coordinate). Each change
writes an intent record first and deletes it last, so a half-made change is recognised:

- ``_tgo/creating.json``: written before the group. While it exists the store is half-made;
  the next ``prepare`` deletes everything else and creates the store again from scratch.
- ``_tgo/appending.json`` ({"old": n}): written before the checkpoint dim grows from n. While
  it exists the append is unfinished; the next ``prepare`` shrinks every checkpoint array
  back to n (no block of the new slots can be committed yet) and the same command appends
  again.

Every change happens under ``metadata_lock`` (a lock file beside local stores). Object
stores (s3://) have no lock: create their metadata from one client (``tgo ingest`` or
``tgo sweep`` does it once, before the block writers start).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from tgo_store.errors import TgoError
from tgo_store.no_space import no_space_error
from tgo_store.store import schema as S
from tgo_store.store.commits import read_commits
from tgo_store.store.gradient_precision import create_zero_fraction, resize_zero_fraction
from tgo_store.store.integrity import CHECKSUM
from tgo_store.store.location import is_local, local_path
from tgo_store.store.record_keys import APPENDING, CREATING
from tgo_store.store.records import RecordStore, clear_half_made

CHECKPOINT_ARRAYS = (S.ACTIVATIONS, S.GRADIENTS, S.CHECKPOINT, S.CHECKPOINT_PATH, S.CHECKPOINT_SHA256)
LONG_NAMES = {S.ACTIVATIONS: "residual-stream output of each block (layer 0: embedding output)",
              S.GRADIENTS: "gradient of the recorded loss (group attribute 'loss') w.r.t. each activation"}


DATA_CHECKSUMS = True  # every data chunk of a new store carries a crc32c (off: a store as tgo wrote it before)


def data_compressors() -> list | None:
    """The bytes-to-bytes codecs of each data chunk inside a shard: its checksum (no compression,
    see ``layout``); None without checksums (benchmarks and tests of older stores)."""
    return [CHECKSUM()] if DATA_CHECKSUMS else None


def block_arrays(gradients: bool) -> tuple[str, ...]:
    """The (checkpoint, layer, sample, token, feature) arrays a store holds, written block by block."""
    return (S.ACTIVATIONS, S.GRADIENTS) if gradients else (S.ACTIVATIONS,)


@contextlib.contextmanager
def metadata_lock(url: str) -> Iterator[None]:
    """Serialise metadata changes between processes (local stores; see module docstring)."""
    if not is_local(url):
        yield
        return
    from filelock import FileLock

    path = os.path.abspath(local_path(url)).rstrip("/") + ".lock"
    try:
        lock = FileLock(path)
        lock.acquire(timeout=600)
    except OSError as exc:
        if (full := no_space_error(exc, url)) is not None:
            raise full from exc
        raise TgoError(f"cannot write beside the store at {url} ({exc}); choose a writable location") from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def metadata_lock_if_free(url: str) -> Iterator[bool]:
    """Hold the metadata lock if no one does (True), without waiting and without creating the
    lock file; False for object stores, a store without a lock file, or a lock held elsewhere."""
    path = os.path.abspath(local_path(url)).rstrip("/") + ".lock" if is_local(url) else ""
    if not path or not os.path.exists(path):
        yield False
        return
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@dataclass
class StoreSpec:
    """Everything that fixes the shape and identity of a store."""

    n_samples: int
    layer_indices: list[int]
    layer_names: list[str]
    token_indices: np.ndarray
    token_kinds: list[str]
    token_rows: np.ndarray
    token_cols: np.ndarray
    n_features: int
    sample_ids: np.ndarray
    labels: np.ndarray
    dtype: str
    chunk_shape: tuple[int, ...]
    shard_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    positions: Any = None  # text sources: a sources.Positions (token_id, attention_mask, token_special)
    gradients: bool = False  # SPEC section 5: a `gradients` array beside `activations`, same layout
    gradient_dtype: str = "float32"  # SPEC section 5: the gradients' storage dtype (--gradient-dtype)


def _coord(group: Any, name: str, values: np.ndarray, dim: str, chunk: int | None = None) -> None:
    values = np.asarray(values)
    dtype = str if values.dtype.kind in "UOT" else values.dtype
    arr = group.create_array(name, shape=values.shape, chunks=(chunk or max(1, len(values)),), dtype=dtype,
                             dimension_names=[dim], overwrite=True, fill_value="" if dtype is str else 0)
    if len(values):
        arr[:] = values


def begin_create(records: RecordStore) -> None:
    """Mark the store half-made (first write of a creation), after clearing what a killed one left."""
    if records.get(CREATING) is not None:
        clear_half_made(records)
    records.put(CREATING, {"state": "creating"})


def create_store(store: Any, spec: StoreSpec, records: RecordStore) -> Any:
    """Create the group, the empty activations array and every coordinate (no checkpoints yet).

    The creation marker stays until ``finish`` (after the first checkpoints are placed).
    """
    begin_create(records)
    group = zarr.open_group(store, mode="a", zarr_format=3)  # empty but for the marker (mode "w-" refuses it)
    group.attrs.update(spec.attrs)
    shape = (0, len(spec.layer_indices), spec.n_samples, len(spec.token_indices), spec.n_features)
    for name in block_arrays(spec.gradients):
        dtype = spec.gradient_dtype if name == S.GRADIENTS else spec.dtype
        act = group.create_array(name, shape=shape, chunks=spec.chunk_shape, shards=spec.shard_shape,
                                 dtype=dtype, dimension_names=list(S.DIMS), compressors=data_compressors(), fill_value=0)
        act.attrs["coordinates"] = " ".join(S.COORDS)
        act.attrs["long_name"] = LONG_NAMES[name]
    if spec.gradients:
        create_zero_fraction(group, len(spec.layer_indices))
    _coord(group, S.CHECKPOINT, np.zeros(0, np.int64), S.CHECKPOINT, 1024)
    _coord(group, S.CHECKPOINT_PATH, np.array([], dtype=str), S.CHECKPOINT, 1024)
    _coord(group, S.CHECKPOINT_SHA256, np.array([], dtype=str), S.CHECKPOINT, 1024)
    _coord(group, S.LAYER, np.asarray(spec.layer_indices, np.int64), S.LAYER)
    _coord(group, S.LAYER_NAME, np.asarray(spec.layer_names, dtype=str), S.LAYER)
    _coord(group, S.SAMPLE, np.asarray(spec.sample_ids, np.int64), S.SAMPLE)
    _coord(group, S.LABEL, np.asarray(spec.labels, np.int64), S.SAMPLE)
    _coord(group, S.TOKEN, np.asarray(spec.token_indices, np.int64), S.TOKEN)
    _coord(group, S.TOKEN_KIND, np.asarray(spec.token_kinds, dtype=str), S.TOKEN)
    _coord(group, S.TOKEN_ROW, np.asarray(spec.token_rows, np.int64), S.TOKEN)
    _coord(group, S.TOKEN_COL, np.asarray(spec.token_cols, np.int64), S.TOKEN)
    if spec.positions is not None:
        from tgo_store.store.positions import write_positions

        write_positions(group, spec.positions, spec.token_indices, spec.shard_shape[2])
    return group


def append_checkpoints(group: Any, records: RecordStore, steps: Sequence[int], paths: Sequence[str],
                       shas: Sequence[str]) -> None:
    """Grow the checkpoint dim by new entries; existing data is not touched.

    The intent record goes first; ``finish`` deletes it once the metadata is consolidated.
    """
    act = group[S.ACTIVATIONS]
    old = act.shape[0]
    new = old + len(steps)
    if records.get(CREATING) is None:
        records.put(APPENDING, {"old": old})
    for name in block_arrays(S.GRADIENTS in group):
        group[name].resize((new, *act.shape[1:]))
    resize_zero_fraction(group, new)
    for name, values in ((S.CHECKPOINT, np.asarray(steps, np.int64)),
                         (S.CHECKPOINT_PATH, np.asarray(paths, dtype=str)),
                         (S.CHECKPOINT_SHA256, np.asarray(shas, dtype=str))):
        arr = group[name]
        arr.resize((new,))
        arr[old:new] = values


def stale_consolidated(store: Any) -> list[tuple[str, str, str, str]]:
    """(array, attribute, consolidated value, own value) wherever the consolidated metadata (what
    readers see) differs from an array's own zarr.json: edited by hand or left stale."""
    try:
        seen = zarr.open_group(store, mode="r", use_consolidated=True)
        own = zarr.open_group(store, mode="r", use_consolidated=False)
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return []
    found = []
    for name in (n for n in (*CHECKPOINT_ARRAYS, S.LAYER, S.SAMPLE, S.TOKEN) if n in own and n in seen):
        a, b = seen[name].metadata.to_dict(), own[name].metadata.to_dict()
        for attr in ("data_type", "shape", "chunk_grid", "codecs", "fill_value"):
            if a.get(attr) != b.get(attr):
                found.append((name, attr, json.dumps(a.get(attr))[:80], json.dumps(b.get(attr))[:80]))
    return found


def set_checkpoint(group: Any, index: int, step: int, path: str) -> None:
    """Record a slot's step and path again: its file moved, or its coordinate was damaged (same sha256)."""
    for name, value in ((S.CHECKPOINT, step), (S.CHECKPOINT_PATH, path)):
        if (int if name == S.CHECKPOINT else str)(group[name][index]) != value:
            group[name][index] = value


def recover(store: Any, records: RecordStore) -> str | None:
    """Undo a change a kill interrupted; returns what was undone ("creating", "appending" or None).

    With no change to undo, damaged metadata is repaired (``repair``)."""
    if records.get(CREATING) is not None:
        clear_half_made(records)
        records.delete(CREATING)
        return "creating"
    intent = records.get(APPENDING)
    if intent is None:
        return repair(store, records)
    group = zarr.open_group(store, mode="r+", use_consolidated=False)  # each array's own, newer metadata
    old = int(intent["old"])
    for name in (n for n in CHECKPOINT_ARRAYS if n in group):
        arr = group[name]
        if arr.shape[0] != old:
            arr.resize((old, *arr.shape[1:]))
    consolidate(store)
    records.delete(APPENDING)
    return "appending"


def repair(store: Any, records: RecordStore) -> str | None:
    """Damaged metadata made right again ("repairing"), or None: `checkpoint` coordinates that differ
    from the commit records, consolidated metadata that differs from the arrays' own."""
    try:
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None
    fixed = S.ACTIVATIONS in group and repair_coordinates(group, read_commits(records))
    if fixed or stale_consolidated(store):
        consolidate(store)
        return "repairing"
    return None


def interrupted_change(records: RecordStore) -> str | None:
    """"creating" or "appending" when a metadata change was cut short (``tgo info`` explains it)."""
    if records.get(CREATING) is not None:
        return "creating"
    return "appending" if records.get(APPENDING) is not None else None


def finish(store: Any, records: RecordStore) -> None:
    """Consolidate the metadata, then drop the intent records: the change is complete."""
    consolidate(store)
    records.delete(APPENDING)
    records.delete(CREATING)


def existing_checkpoints(group: Any, commits: dict[tuple[int, int], dict] | None = None) -> list[tuple[int, str, str]]:
    """(step, path, sha256) of every checkpoint slot in the store; with ``commits``, the step and
    sha256 its commit records agree on where they differ from the coordinates (damaged ones)."""
    n = group[S.ACTIVATIONS].shape[0]
    if n == 0:
        return []
    steps = group[S.CHECKPOINT][:n]
    paths = group[S.CHECKPOINT_PATH][:n]
    shas = group[S.CHECKPOINT_SHA256][:n]
    rows = [(int(a), str(b), str(c)) for a, b, c in zip(steps, paths, shas, strict=True)]
    for slot, (step, sha) in recorded_identity(commits or {}).items():
        if slot < n:
            rows[slot] = (step, rows[slot][1], sha)
    return rows


def recorded_identity(commits: dict[tuple[int, int], dict]) -> dict[int, tuple[int, str]]:
    """slot -> (step, sha256) that every commit record of the slot names (what its blocks were
    written from: the truth when the `checkpoint` coordinates were damaged)."""
    seen: dict[int, set[tuple[int, str]]] = {}
    for (slot, _block), record in commits.items():
        if record.get("sha256") and record.get("step") is not None:
            seen.setdefault(slot, set()).add((int(record["step"]), str(record["sha256"])))
    return {slot: next(iter(found)) for slot, found in seen.items() if len(found) == 1}


def repair_coordinates(group: Any, commits: dict[tuple[int, int], dict]) -> bool:
    """Write back the step and sha256 of every slot whose coordinates differ from its commit records."""
    n = group[S.ACTIVATIONS].shape[0]
    changed = False
    for slot, (step, sha) in recorded_identity(commits).items():
        if slot >= n:
            continue
        for name, value, kind in ((S.CHECKPOINT, step, int), (S.CHECKPOINT_SHA256, sha, str)):
            if kind(group[name][slot]) != value:
                group[name][slot] = value
                changed = True
    return changed


def consolidate(store: Any) -> None:
    zarr.consolidate_metadata(store)
