"""What is in a store: dims, sizes, checkpoints, completeness, bytes stored vs logical, layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from tgo_store import schema as S
from tgo_store.errors import TgoError
from tgo_store.writer import open_zarr_store, read_commits


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

    @property
    def complete(self) -> bool:
        return all(c["blocks_done"] == self.blocks_per_checkpoint for c in self.checkpoints)


def _stored_bytes(store: Any) -> int:
    from zarr.core.sync import sync

    async def total() -> int:
        size = 0
        async for key in store.list_prefix(S.ACTIVATIONS + "/"):
            size += await store.getsize(key)
        return size

    return sync(total())


def store_info(url: str, *, storage_options: dict | None = None) -> StoreInfo:
    """Read only metadata, commit records and object sizes; never the activations."""
    store = open_zarr_store(url, read_only=True, storage_options=storage_options)
    try:
        group = zarr.open_group(store, mode="r")
        act = group[S.ACTIVATIONS]
    except (FileNotFoundError, KeyError) as exc:
        raise TgoError(f"no tgo store at {url}; check the URL or run `tgo ingest` first") from exc
    S.check_schema_version(dict(group.attrs), f"store {url}")
    n_ckpt = act.shape[0]
    spb = int(dict(group.attrs).get("tgo_layout", {}).get("samples_per_block", (act.shards or act.chunks)[2]))
    n_blocks = int(np.ceil(act.shape[2] / spb)) if act.shape[2] else 0
    commits = read_commits(store)
    steps = group[S.CHECKPOINT][:n_ckpt] if n_ckpt else []
    paths = group[S.CHECKPOINT_PATH][:n_ckpt] if n_ckpt and S.CHECKPOINT_PATH in group else [""] * n_ckpt
    shas = group[S.CHECKPOINT_SHA256][:n_ckpt] if n_ckpt and S.CHECKPOINT_SHA256 in group else [""] * n_ckpt
    checkpoints = []
    for i in range(n_ckpt):
        done = sum(1 for b in range(n_blocks) if commits.get((i, b), {}).get("sha256") == str(shas[i]))
        checkpoints.append({"index": i, "step": int(steps[i]), "path": str(paths[i]), "sha256": str(shas[i]),
                            "blocks_done": done})
    return StoreInfo(url=url, dims=dict(zip(S.DIMS, act.shape, strict=True)), dtype=str(act.dtype),
                     chunks=tuple(act.chunks), shards=tuple(act.shards) if act.shards else None,
                     checkpoints=checkpoints, blocks_per_checkpoint=n_blocks,
                     bytes_logical=int(np.prod(act.shape)) * act.dtype.itemsize,
                     bytes_stored=_stored_bytes(store), attrs=dict(group.attrs))
