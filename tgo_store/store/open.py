"""open_store(url) -> a lazy, dask-backed xarray Dataset, chunked along the store's shards."""

from __future__ import annotations

import warnings
from typing import Any

import xarray as xr

from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.location import fast_codecs


def open_store(url: str, *, storage_options: dict | None = None, chunks: Any = "shards") -> xr.Dataset:
    """Open a store lazily; by default one dask chunk per shard (one layer of one sample block)."""
    try:
        with warnings.catch_warnings(), fast_codecs(url):
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            ds = xr.open_zarr(url, storage_options=storage_options, chunks=None if chunks == "shards" else chunks,
                              zarr_format=3)
    except FileNotFoundError as exc:
        raise TgoError(f"no store at {url}; check the URL or run `tgo ingest` first") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise TgoError(f"cannot open {url} as a Zarr v3 store ({exc}); check the URL") from exc
    S.check_schema_version(dict(ds.attrs), f"store {url}")
    if chunks == "shards" and S.ACTIVATIONS in ds:
        shards = ds[S.ACTIVATIONS].encoding.get("shards") or ds[S.ACTIVATIONS].encoding.get("chunks")
        with warnings.catch_warnings(), fast_codecs(url):  # coords have other chunks than the shards
            warnings.simplefilter("ignore", UserWarning)
            ds = xr.open_zarr(url, storage_options=storage_options, zarr_format=3,
                              chunks=dict(zip(S.DIMS, shards, strict=True)) if shards else {})
    return ds


def complete_dataset(ds: xr.Dataset, url: str, *, complete_only: bool = False,
                     storage_options: dict | None = None) -> xr.Dataset:
    """The dataset to analyse: a tgo store must be complete (unwritten blocks read as zeros).

    With ``complete_only`` the incomplete checkpoints are left out instead of refused. Datasets
    that tgo did not write (no ``tgo_schema`` attribute) have no commit records and pass as they are.
    """
    if S.ATTR_SCHEMA not in ds.attrs:
        return ds
    from tgo_store.store.info import store_info
    from tgo_store.store.verify import refuse_damage

    facts = store_info(url, storage_options=storage_options)
    refuse_damage(url, facts.damage)
    keep = facts.complete_checkpoints()
    if len(keep) == len(facts.checkpoints):
        return ds
    if complete_only and keep:
        return ds.isel({S.CHECKPOINT: keep})
    first = next(c for c in facts.checkpoints if c["index"] not in keep)
    state = (f"was refused ({first['failed']})" if first.get("failed")
             else f"has {first['blocks_done']}/{facts.blocks_per_checkpoint} blocks written")
    if not keep:
        raise TgoError(f"store {url} has no complete checkpoint: checkpoint {first['index']} (step {first['step']}) "
                       f"{state}; finish it with the `tgo ingest` that wrote it (see `tgo info {url}`)")
    raise TgoError(f"store {url} is incomplete: checkpoint {first['index']} (step {first['step']}) {state}; "
                   f"finish it with the `tgo ingest` that wrote it (see `tgo info {url}`), or pass --complete-only "
                   f"to analyse the {len(keep)} complete checkpoints")
