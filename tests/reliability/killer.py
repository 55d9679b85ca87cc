"""Fault injection for the kill -9 tests: count every write to a store and SIGKILL after the k-th,
or inside it ("torn": its temporary file written, not yet renamed into place).

Writes are Zarr's (``LocalStore._set``, ``delete``, ``delete_dir``) and tgo's own records
(``RecordStore.put_bytes``, ``delete``): every byte tgo changes in a local store goes through
one of them. Both write a temporary file and rename it (``zarr.storage._local._atomic_write``,
``os.replace`` in ``tgo_store.store.records``); a torn kill lands between the two, so it leaves the
temporary a real kill leaves. Children are forked from a forkserver that imported torch and
tgo once, so each kill point costs a fork, not a 4 s interpreter start.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import types
from collections.abc import Callable
from typing import Any

import zarr.storage
import zarr.storage._local

import tgo_analysis.analyze  # noqa: F401  (the forkserver imports analysis, dask and scipy once too)
import tgo_store
import tgo_store.store.records
from tgo_store.store.records import RecordStore

WARM_UP_ENV = "TGO_KILLER_WARM_UP"
WRITERS: tuple[tuple[Any, str], ...] = (
    (zarr.storage.LocalStore, "_set"), (zarr.storage.LocalStore, "delete"), (zarr.storage.LocalStore, "delete_dir"),
    (RecordStore, "put_bytes"), (RecordStore, "delete"),
)


class _RenameHook(types.ModuleType):
    """``os`` for ``tgo_store.store.records``, with ``replace`` calling a hook first."""

    def __init__(self, before_rename: Callable[[str], None]):
        super().__init__("os")
        self._before = before_rename

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        self._before(str(dst))
        os.replace(src, dst)


def _hook_renames(before_rename: Callable[[str], None]) -> Callable[[], None]:
    """Call ``before_rename(path)`` when a write's temporary file is written, before its rename."""
    atomic_write = zarr.storage._local._atomic_write

    @contextlib.contextmanager
    def hooked(path: Any, mode: Any, exclusive: bool = False) -> Any:
        with atomic_write(path, mode, exclusive) as f:
            yield f
            f.flush()
            before_rename(str(path))

    zarr.storage._local._atomic_write = hooked
    tgo_store.store.records.os = _RenameHook(before_rename)

    def undo() -> None:
        zarr.storage._local._atomic_write = atomic_write
        tgo_store.store.records.os = os

    return undo


def install(after_write: Callable[[str], None], before_rename: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Call ``after_write("Owner.method")`` after each store write (and ``before_rename(path)`` inside each,
    see ``_hook_renames``); returns a function that undoes it."""
    originals = []
    undo_renames = _hook_renames(before_rename) if before_rename else (lambda: None)
    for owner, name in WRITERS:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        if owner is zarr.storage.LocalStore:  # async methods
            async def wrapped(self: Any, *args: Any, _original: Any = original, _name: str = f"{owner.__name__}.{name}", **kwargs: Any) -> Any:
                result = await _original(self, *args, **kwargs)
                after_write(_name)
                return result
        else:
            def wrapped(self: Any, *args: Any, _original: Any = original, _name: str = f"{owner.__name__}.{name}", **kwargs: Any) -> Any:
                result = _original(self, *args, **kwargs)
                after_write(_name)
                return result
        setattr(owner, name, functools.wraps(original)(wrapped))

    def undo() -> None:
        for owner, name, original in originals:
            setattr(owner, name, original)
        undo_renames()

    return undo


def write_names(run: Callable[[], Any]) -> list[str]:
    """The store writes ``run`` makes, in order, as ``Owner.method`` (``RecordStore.put_bytes``...)."""
    writes: list[str] = []
    undo = install(writes.append)
    try:
        run()
    finally:
        undo()
    return writes


def count_writes(run: Callable[[], Any]) -> int:
    """How many store writes ``run`` makes."""
    return len(write_names(run))


def warm_up() -> None:
    """One small ingest in the forkserver, and the imports of an analysis, so children start with
    every lazy import and first-call cost paid."""
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
    from xarray.namedarray.parallelcompat import list_chunkmanagers

    list_chunkmanagers()  # imports dask.array (seconds); an analysis here would start thread pools before forks


if os.environ.get(WARM_UP_ENV) == "1":  # set by the test before the forkserver starts
    warm_up()


def die_at(k: int, torn: bool = False) -> None:
    """SIGKILL this process right after its k-th store write, or with ``torn`` inside the first
    write that reaches its rename once k - 1 writes are done (a delete has no temporary to tear)."""
    count = [0]

    def after_write(_name: str) -> None:
        count[0] += 1
        if count[0] == k and not torn:
            os.kill(os.getpid(), signal.SIGKILL)

    def before_rename(_path: str) -> None:
        if torn and count[0] >= k - 1:
            os.kill(os.getpid(), signal.SIGKILL)

    install(after_write, before_rename)


def ingest_and_die(k: int, url: str, kwargs: dict, torn: bool = False) -> None:
    """Run ``tgo_store.ingest`` and SIGKILL this process at its k-th store write (see ``die_at``)."""
    die_at(k, torn)
    tgo_store.ingest(url, **kwargs)


def analyze_and_die(k: int, store: str, kwargs: dict, torn: bool = False) -> None:
    """Run ``tgo_analysis.analyze`` of ``store`` and SIGKILL this process at its k-th store write."""
    from tgo_analysis.analyze import analyze

    die_at(k, torn)
    analyze(tgo_store.open_store(store), **kwargs)


def analyze_and_name_writes(store: str, kwargs: dict, names_file: str) -> None:
    """Run ``tgo_analysis.analyze`` of ``store`` and save its store writes' names (``write_names``)
    as JSON: counted in a child like the killed ones, so the kill points come from the same start."""
    import json

    from tgo_analysis.analyze import analyze

    names = write_names(lambda: analyze(tgo_store.open_store(store), **kwargs))
    with open(names_file, "w") as f:
        json.dump(names, f)


def analyze_into_and_die(k: int, store: str, out: str, metrics: str, kwargs: dict) -> None:
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
