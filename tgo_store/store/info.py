"""What is in a store: dims, sizes, checkpoints, completeness, bytes stored vs logical, layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tgo_store.store import schema as S
from tgo_store.store.commits import read_commits, read_failures
from tgo_store.store.location import open_zarr_store, store_records
from tgo_store.store.metadata import interrupted_change, metadata_lock_if_free
from tgo_store.store.records import RecordStore
from tgo_store.store.temporaries import Temporaries, sweep_temporaries
from tgo_store.store.verify import Damage, metadata_damage, open_activation_group


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
    damage: list[Damage] = field(default_factory=list)  # found without reading data (``verify.metadata_damage``)

    def complete_checkpoints(self) -> list[int]:
        """Indices of the checkpoints whose every block is committed."""
        return [c["index"] for c in self.checkpoints if c["blocks_done"] == self.blocks_per_checkpoint]

    @property
    def complete(self) -> bool:
        return self.interrupted is None and not self.damage and all(c["blocks_done"] == self.blocks_per_checkpoint
                                                for c in self.checkpoints)


def _stored_bytes(records: RecordStore) -> int:
    """Bytes of the activation objects as stored (fsspec ``du``: local files or object sizes)."""
    try:
        return int(records.fs.du(records.path(S.ACTIVATIONS), total=True))
    except FileNotFoundError:
        return 0


def store_info(url: str, *, storage_options: dict | None = None) -> StoreInfo:
    """Read only metadata, commit records, object sizes and a listing of the shards; never the activations.

    The one write: temporary files of writes a kill cut short, which no live writer can own
    (``tgo_store.store.temporaries``), are removed; the others are reported.
    """
    records = store_records(url, storage_options)
    store = open_zarr_store(url, read_only=True, storage_options=storage_options)
    group, act = open_activation_group(store, url, records)
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
                     interrupted=interrupted_change(records), temporaries=temporaries,
                     damage=metadata_damage(records, store, group, commits))
