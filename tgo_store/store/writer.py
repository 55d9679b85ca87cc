"""Writing one block: its whole shards, made durable, then its commit record; in the background.

A (checkpoint, sample block) block is written as whole shards (one per layer and token
shard); the commit record (``commits``) comes only after every shard is on disk. Records go
through ``records`` (fsspec's public API, atomic on local stores); the store's metadata
(creating it, appending checkpoints) is ``metadata``. Icechunk would give transactions on
object stores, but it is not an fsspec URL store and plain ``xarray.open_zarr(url)`` could
not read it, which SPEC requires.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tgo_store.store import schema as S
from tgo_store.store.commits import clear_failure, write_commit
from tgo_store.store.gradient_precision import block_counts
from tgo_store.store.layout import block_shard_keys
from tgo_store.store.location import open_activations_for_writing, store_records
from tgo_store.store.plan import StorePlan
from tgo_store.store.records import RecordStore, fsync_paths
from tgo_store.store.temporaries import remove_block_temporaries


def discard_shards(records: RecordStore, keys: Sequence[str]) -> None:
    """Delete a block's shards before rewriting them.

    A block without a commit record may hold a torn shard from a killed writer; zarr's sharding
    codec merges new data into an existing shard, so the old bytes must go first.
    """
    for key in keys:
        records.delete(key)


def sync_shards(records: RecordStore, keys: Sequence[str]) -> None:
    """Make written shards durable before a commit record names them (local stores: fsync)."""
    if records.local:
        fsync_paths([records.path(key) for key in keys])


def write_block(plan: StorePlan, position: int, block: int, data: np.ndarray, array: Any = None,
                gradients: np.ndarray | None = None, gradient_array: Any = None) -> None:
    """Write one block's shards (activations, and gradients when given), make them durable, then
    write its commit record.

    The order is the guarantee: a commit record exists only for a block whose every shard is
    on disk (fsync'd on local stores; a completed PUT on object stores).
    """
    records = store_records(plan.url, plan.storage_options)
    arrays = [(array if array is not None else open_activations_for_writing(plan.url, plan.storage_options), data)]
    if gradients is not None:
        arrays.append((gradient_array if gradient_array is not None else
                       open_activations_for_writing(plan.url, plan.storage_options, S.GRADIENTS), gradients))
    start, stop = plan.layout.block_range(block, plan.n_samples)
    index = plan.checkpoint_indices[position]
    keys = [key for target, _ in arrays for key in block_shard_keys(target, index, block)]
    remove_block_temporaries(records, keys)  # a killed write of this block left them
    discard_shards(records, keys)
    for target, values in arrays:
        target[index, :, start:stop] = values
    sync_shards(records, keys)
    ref = plan.checkpoints[position]
    write_commit(records, index, block, {"sha256": ref.sha256, "step": ref.step, "samples": [start, stop],
                                       "written_at": time.time(), **block_counts(gradients),
                                       "arrays": {target.basename: {"dtype": str(target.dtype),
                                                                    "shape": list(values.shape)}
                                                  for target, values in arrays}})
    clear_failure(records, index, block)  # a refused block, now written


class BackgroundWriter:
    """A thread that writes blocks while the caller captures the next ones.

    The queue is bounded, so at most ``depth`` blocks wait in memory; an error in the
    thread is raised in the caller at the next ``put`` or at ``close``.
    """

    def __init__(self, write: Callable[..., None], depth: int = 2):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.bytes_written = 0
        self.seconds_writing = 0.0
        self._thread = threading.Thread(target=self._run, name="tgo-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            args, on_done, release = item
            try:
                if self._error is None:
                    start = time.perf_counter()
                    self._write(*args)
                    self.seconds_writing += time.perf_counter() - start
                    self.bytes_written += sum(a.nbytes for a in args if isinstance(a, np.ndarray))
                    if on_done is not None:
                        on_done()
            except BaseException as exc:
                self._error = exc
            finally:
                if release is not None:
                    release()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, *args: Any, on_done: Callable[[], None] | None = None,
            release: Callable[[], None] | None = None) -> None:
        """Queue a write; ``on_done`` runs after it succeeds, ``release`` after it ends either way."""
        self._raise()
        self._queue.put((args, on_done, release))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()
