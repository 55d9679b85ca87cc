"""Fault injection for the kill -9 tests: count every write to a store and SIGKILL after the k-th.

Writes are Zarr's (``LocalStore._set``, ``delete``, ``delete_dir``) and tgo's own records
(``RecordStore.put_bytes``, ``delete``): every byte tgo changes in a local store goes through
one of them. Children are forked from a forkserver that imported torch and tgo once, so each
kill point costs a fork, not a 4 s interpreter start.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from typing import Any

import zarr.storage

import tgo_store
from tgo_store.records import RecordStore

WARM_UP_ENV = "TGO_KILLER_WARM_UP"
WRITERS: tuple[tuple[Any, str], ...] = (
    (zarr.storage.LocalStore, "_set"), (zarr.storage.LocalStore, "delete"), (zarr.storage.LocalStore, "delete_dir"),
    (RecordStore, "put_bytes"), (RecordStore, "delete"),
)


def install(after_write: Callable[[str], None]) -> Callable[[], None]:
    """Call ``after_write(name)`` after each store write; returns a function that undoes it."""
    originals = []
    for owner, name in WRITERS:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        if owner is zarr.storage.LocalStore:  # async methods
            async def wrapped(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                result = await _original(self, *args, **kwargs)
                after_write(_name)
                return result
        else:
            def wrapped(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                result = _original(self, *args, **kwargs)
                after_write(_name)
                return result
        setattr(owner, name, functools.wraps(original)(wrapped))

    def undo() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)

    return undo


def count_writes(run: Callable[[], Any]) -> int:
    """How many store writes ``run`` makes."""
    writes = []
    undo = install(writes.append)
    try:
        run()
    finally:
        undo()
    return len(writes)


def warm_up() -> None:
    """One small ingest in the forkserver, so children start with every lazy import and first-call cost paid."""
    import tempfile

    import timm  # noqa: F401  (imported once by the forkserver, not by each child)
    import torch

    from tests.support import TINY_VIT, TINY_VIT_SPEC, save_checkpoints

    torch.set_num_threads(1)  # no OpenMP pool in a process that forks
    with tempfile.TemporaryDirectory() as folder:
        ckpts = save_checkpoints(os.path.join(folder, "ckpt"), [0])
        tgo_store.ingest(os.path.join(folder, "s.zarr"), model_spec=TINY_VIT_SPEC, model_kwargs=dict(TINY_VIT),
                         checkpoints=ckpts, data_spec="synthetic:8", batch_size=4, samples_per_block=4,
                         device="cpu", progress=False)


if os.environ.get(WARM_UP_ENV) == "1":  # set by the test before the forkserver starts
    warm_up()


def ingest_and_die(k: int, url: str, kwargs: dict) -> None:
    """Run ``tgo_store.ingestion`` and SIGKILL this process right after its k-th store write."""
    count = [0]

    def after_write(_name: str) -> None:
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    install(after_write)
    tgo_store.ingest(url, **kwargs)


def analyze_and_die(k: int, store: str, out: str, metrics: str, kwargs: dict) -> None:
    """Run ``tgo_analysis.analyze`` into ``out`` and SIGKILL this process right after its k-th store write."""
    import xarray as xr

    import tgo_analysis

    count = [0]

    def after_write(_name: str) -> None:
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    install(after_write)
    tgo_analysis.analyze(xr.open_zarr(store), metrics, out=out, progress=False, **kwargs)
