"""Small JSON records kept inside a store, beside the Zarr arrays, through fsspec's public API.

tgo keeps bookkeeping next to the data it describes: block commit records (ingest), done
markers (analysis), sweep status and the write probe. All of them are small JSON documents
under the ``_tgo/`` prefix of a store. This module is the one place that reads and writes
them (their keys are ``record_keys``), so the atomicity rule is written once:

- local paths (plain or ``file://``): temp file, fsync, rename, fsync of the folder, so a
  record is either absent or whole after a kill -9 or a power loss;
- any other fsspec URL (``memory://``, ``s3://``...): one ``pipe_file`` call, which object
  stores apply atomically (a PUT is all or nothing).

Keys are relative to the store root and use ``/`` separators, like Zarr keys.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import fsspec

from tgo_store.errors import TgoError
from tgo_store.store.record_keys import CREATING, RECORD_ROOT, write_probe_key


def _fsync(path: str) -> None:
    """fsync a file or a folder (a folder's entry for a new file is only durable once it is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_paths(paths: list[str]) -> None:
    """Flush local files, then their folders, to disk (before a record names them)."""
    existing = [p for p in paths if os.path.exists(p)]
    for path in [*existing, *sorted({os.path.dirname(p) for p in existing})]:
        _fsync(path)


class RecordStore:
    """put / get / list / delete of JSON records under one store URL."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:  # unknown protocol, or its fsspec backend not installed
            raise TgoError(f"cannot use the URL {url} ({exc}); use a local path, file://, memory://, s3:// "
                           "or another fsspec protocol whose package is installed") from exc
        self.root = root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                                else (self.fs.protocol,))

    def path(self, key: str) -> str:
        """The filesystem path of a key (for local stores, an OS path)."""
        return f"{self.root}/{key}"

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``, atomically where the backend allows."""
        path = self.path(key)
        if self.local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:  # a full disk: leave no temporary behind
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            os.replace(tmp, path)
            _fsync(folder)
            return
        self.fs.pipe_file(path, data)

    def put(self, key: str, record: Any) -> None:
        """Write one JSON record."""
        self.put_bytes(key, json.dumps(record, sort_keys=True).encode())

    def get(self, key: str, default: Any = None) -> Any:
        """The record at ``key``; ``default`` when absent or torn (a torn record never counts)."""
        try:
            return json.loads(self.fs.cat_file(self.path(key)))
        except (FileNotFoundError, ValueError):
            return default

    def keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (a folder-like key), sorted; temp files of writers are skipped."""
        base = self.path(prefix.rstrip("/"))
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return iter(())
        root = self.fs._strip_protocol(self.root).rstrip("/") if self.root else ""
        keys = []
        for path in found:
            stripped = self.fs._strip_protocol(path)
            key = stripped[len(root):].lstrip("/") if root else stripped.lstrip("/")
            if not key.endswith(".tmp"):
                keys.append(key)
        return iter(sorted(keys))

    def items(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(key, record) for every readable record under ``prefix``; torn ones are skipped."""
        for key in self.keys(prefix):
            record = self.get(key)
            if record is not None:
                yield key, record

    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine (deleting is idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def probe_writable(self) -> None:
        """Write and delete a probe record; raises OSError/PermissionError on a read-only store."""
        key = write_probe_key()
        self.put_bytes(key, b"probe")
        self.delete(key)


def clear_half_made(records: RecordStore) -> None:
    """Delete everything of a half-made store except its creation marker (so a kill here is safe too)."""
    fs, root = records.fs, records.root
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name != RECORD_ROOT:
            fs.rm(entry, recursive=True)
    for key in records.keys(RECORD_ROOT):
        if key != CREATING:
            records.delete(key)
