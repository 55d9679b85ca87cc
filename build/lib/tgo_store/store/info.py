"""What is in a store: dims, sizes, checkpoints, completeness, bytes stored vs logical, layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.commits import read_commits, read_failures
from tgo_store.store.location import open_zarr_store, store_records
from tgo_store.store.metadata import interrupted_change, metadata_lock_if_free
from tgo_store.store.records import RecordStore
from tgo_store.store.temporaries import Temporaries, sweep_temporaries


@dataclass
class StoreInfo:
    url: str
    dims: dict[str, int]
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    blocks_per_checkpoint: int = 0
    bytes_logical: int = 0
    bytes_stored: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)
    interrupted: str | None = None  # "appending" when a kill cut a checkpoint append short
    temporaries: Temporaries = field(default_factory=Temporaries)  # of killed writes: removed, and left

    def complete_checkpoints(self) -> list[int]:
        """Indices of the checkpoints whose every block is committed."""
        return [c["index"] for c in self.checkpoints if c["blocks_done"] == self.blocks_per_checkpoint]

    @property
    def complete(self) -> bool:
        return self.interrupted is None and all(c["blocks_done"] == self.blocks_per_checkpoint
                                                for c in self.checkpoints)


def _stored_bytes(records: RecordStore) -> int:
    """Bytes of the activation objects as stored (fsspec ``du``: local files or object sizes)."""
    try:
        return int(records.fs.du(records.path(S.ACTIVATIONS), total=True))
    except FileNotFoundError:
        return 0


def _open_group(store: Any, url: str, records: RecordStore) -> Any:
    change = interrupted_change(records)
    if change == "creating":
        raise TgoError(f"store {url} was cut short while being created; re-run the `tgo ingest` that "
                       "created it (it starts the store again), or delete the folder")
    try:
        group = zarr.open_group(store, mode="r")
        return group, group[S.ACTIVATIONS]
    except (FileNotFoundError, KeyError) as exc:
        raise TgoError(f"no tgo store at {url}; check the URL or run `tgo ingest` first") from exc
    except (ValueError, TypeError) as exc:  # a corrupt zarr.json, or JSON that is not Zarr metadata
        raise TgoError(f"{url} holds unreadable Zarr metadata ({type(exc).__name__}: {str(exc)[:120]}); "
                       "restore its zarr.json files or ingest into a new store") from exc


def store_info(url: str, *, storage_options: dict | None = None) -> StoreInfo:
    """Read only metadata, commit records and object sizes; never the activations.

    The one write: temporary files of writes a kill cut short, which no live writer can own
    (``tgo_store.store.temporaries``), are removed; the others are reported.
    """
    records = store_records(url, storage_options)
    store = open_zarr_store(url, read_only=True, storage_options=storage_options)
    group, act = _open_group(store, url, records)
    S.check_schema_version(dict(group.attrs), f"store {url}")
    n_ckpt = act.shape[0]
    spb = int(dict(group.attrs).get("tgo_layout", {}).get("samples_per_block", (act.shards or act.chunks)[2]))
    n_blocks = int(np.ceil(act.shape[2] / spb)) if act.shape[2] else 0
    commits = read_commits(records)
    with metadata_lock_if_free(url) as metadata_locked:
        temporaries = sweep_temporaries(records, set(commits), metadata_locked=metadata_locked)
    failures = read_failures(records)
    steps = group[S.CHECKPOINT][:n_ckpt] if n_ckpt else []
    paths = group[S.CHECKPOINT_PATH][:n_ckpt] if n_ckpt and S.CHECKPOINT_PATH in group else [""] * n_ckpt
    shas = group[S.CHECKPOINT_SHA256][:n_ckpt] if n_ckpt and S.CHECKPOINT_SHA256 in group else [""] * n_ckpt
    checkpoints = []
    for i in range(min(n_ckpt, len(steps), len(paths), len(shas))):
        done = sum(1 for b in range(n_blocks) if commits.get((i, b), {}).get("sha256") == str(shas[i]))
        checkpoints.append({"index": i, "step": int(steps[i]), "path": str(paths[i]), "sha256": str(shas[i]),
                            "blocks_done": done, "failed": failures.get(i, {}).get("reason")})
    return StoreInfo(url=url, dims=dict(zip(S.DIMS, act.shape, strict=True)), dtype=str(act.dtype),
                     chunks=tuple(act.chunks), shards=tuple(act.shards) if act.shards else None,
                     checkpoints=checkpoints, blocks_per_checkpoint=n_blocks,
                     bytes_logical=int(np.prod(act.shape)) * act.dtype.itemsize,
                     bytes_stored=_stored_bytes(records), attrs=dict(group.attrs),
                     interrupted=interrupted_change(records), temporaries=temporaries)
