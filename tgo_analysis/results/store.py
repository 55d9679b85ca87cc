"""The results store: create or resume it, write one (checkpoint, layer) at a time, mark it done.

Each written unit (and each multi-slab unit, SPEC section 6, by its key) gets a done record (``tgo_store.store.records``) under ``_tgo/done``; a re-run of
the same analysis skips those units, and a store that gained checkpoints since grows along
``checkpoint`` instead of starting over. A different analysis in the same place is refused.

Creation is many writes (every array's metadata, the coordinates, the config): it runs under
``_tgo/creating.json`` as an activation store's does (``tgo_store.store.metadata``), so a kill
anywhere in it leaves a store the re-run recognises as half-made and creates again, instead
of one it refuses as "another analysis". A resume removes the temporary files killed writes
left (``tgo_store.store.temporaries``; an analysis is the one writer of its results store).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.results.describe import describe_results
from tgo_store.errors import TgoError
from tgo_store.store.json_attrs import decode_attrs, encode_attrs
from tgo_store.store.record_keys import CREATING, DONE_PREFIX, done_item_key, done_unit_key
from tgo_store.store.records import RecordStore, clear_half_made
from tgo_store.store.temporaries import sweep_temporaries


def done_units(out: str) -> set[tuple[int, int]]:
    """(checkpoint, layer) indices whose results are written."""
    found = set()
    for _key, record in RecordStore(out).items(DONE_PREFIX):
        if "item" in record:  # a multi-slab unit (``done_items``)
            continue
        try:
            found.add((int(record["checkpoint"]), int(record["layer"])))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def mark_done(out: str, ci: int, li: int) -> None:
    RecordStore(out).put(done_unit_key(ci, li), {"checkpoint": ci, "layer": li, "at": time.time()})


def done_items(out: str) -> set[str]:
    """Keys of the multi-slab units (``engine.units.WorkItem.key``) whose results are written."""
    return {str(record["item"]) for _key, record in RecordStore(out).items(DONE_PREFIX) if "item" in record}


def mark_item_done(out: str, key: str) -> None:
    """The done record of a multi-slab unit, written after all of its cells."""
    RecordStore(out).put(done_item_key(key), {"item": key, "at": time.time()})


def prepare_output(out: str, template: xr.Dataset, config: dict, overwrite: bool,
                   config_at: Callable[[int], dict] | None = None) -> set[tuple[int, int]]:
    """Create the output store, or resume a compatible one; refuse a different existing output.

    ``config_at(n)``: the config this analysis records for the store's first n checkpoints
    (``all`` means fewer metrics at one checkpoint: CKA across checkpoints needs two), so results
    written then grow instead of being refused; default: ``config`` with the shape changed."""
    import zarr

    records = RecordStore(out)
    try:
        existing = None if records.get(CREATING) is not None else zarr.open_group(out, mode="r", use_consolidated=False)
    except (FileNotFoundError, KeyError, ValueError):
        existing = None
    if existing is not None and not overwrite:
        previous = decode_attrs(existing.attrs).get("tgo_config")
        wanted = json.loads(json.dumps(config))
        lacking = any(name not in existing for name in template.data_vars)  # a growth an older tgo cut short
        if previous is not None and (_grown_along_checkpoint(previous, wanted, config_at)
                                     or (previous == wanted and lacking)):
            _grow_checkpoints(out, template, wanted)
        elif previous != wanted:
            raise TgoError(f"output {out} already exists from another analysis; pass --overwrite to replace it "
                           "or choose another --out")
        sweep_temporaries(records, (), metadata_locked=True)
        return done_units(out)
    try:
        records.put(CREATING, {"state": "creating"})
        clear_half_made(records)  # what a killed creation, or the analysis --overwrite replaces, left
        template.to_zarr(out, mode="a", compute=False, zarr_format=3, consolidated=False)
    except (PermissionError, OSError) as exc:
        raise TgoError(f"cannot write results to {out} ({exc}); choose a writable --out") from exc
    group = _open(out)
    group.attrs.update(encode_attrs({"tgo_config": config}))
    for name in template.coords:  # coordinates are small: write them now
        if name in group and name not in template.dims:
            group[name][:] = template[name].values
    for name in template.dims:
        if name in group:
            group[name][:] = template[name].values
    records.delete(CREATING)
    return set()


def _grown_along_checkpoint(previous: dict, wanted: dict, config_at: Callable[[int], dict] | None) -> bool:
    """Same analysis of a store that gained checkpoints since (training is still running): the
    previous config is exactly what this one would have recorded at the previous size."""
    shape = previous.get("shape") or [0]
    if shape[1:] != wanted["shape"][1:] or not 0 < shape[0] < wanted["shape"][0]:
        return False
    earlier = config_at(shape[0]) if config_at is not None else {**wanted, "shape": shape}
    return json.loads(json.dumps(earlier)) == previous


def _grow_checkpoints(out: str, template: xr.Dataset, config: dict) -> None:
    """Append checkpoints to existing results: resize along `checkpoint`, keep what is written.

    Variables a statistic adds only from two checkpoints on (CKA to a reference, updates) are
    created; multi-slab units whose partner changed run again (their done keys name the
    partners). The consolidated metadata is rewritten last: until then readers that trust it
    see the old size, writers (``_open``) never read it, and a re-run grows again (idempotent).
    """
    import zarr

    group = _open(out)
    n = template.sizes[N.CHECKPOINT]
    for name in list(template.data_vars) + [c for c in template.coords if template[c].dims == (N.CHECKPOINT,)]:
        if name in group and template[name].dims[:1] == (N.CHECKPOINT,):
            array = group[name]
            array.resize((n, *array.shape[1:]))
            if name in template.coords:
                array[:] = template[name].values
    added = [name for name in template.data_vars if name not in group]
    if added:
        template[added].to_zarr(out, mode="a", compute=False, zarr_format=3, consolidated=False)
    group.attrs.update(encode_attrs({"tgo_config": config}))
    zarr.consolidate_metadata(out)


def _open(out: str) -> Any:
    """The results group for writing, from each array's own metadata (never the consolidated copy,
    which a growth rewrites last)."""
    import zarr

    return zarr.open_group(out, mode="r+", use_consolidated=False)


def write_unit(out: str, ci: int, li: int, arrays: dict[str, np.ndarray], template: xr.Dataset) -> None:
    """Write one (checkpoint, layer) region: whole chunks only, so parallel writers never collide."""
    group = _open(out)
    for name, value in arrays.items():
        if name in template:
            group[name][ci, li] = np.asarray(value, dtype=group[name].dtype)


def finish(out: str | None, template: xr.Dataset, computed: dict[tuple[int, int], dict[str, np.ndarray]],
           attrs: dict) -> xr.Dataset:
    """The results: the written store with ``attrs`` (consolidated), or ``computed`` in memory."""
    import dask.threaded

    if out:
        import zarr

        group = _open(out)
        # netCDF-serialisable (SPEC 9), with what earlier runs wrote; tgo reads them decoded (open_results)
        group.attrs.update(encode_attrs({**decode_attrs(group.attrs), **attrs}))
        zarr.consolidate_metadata(out)
        return open_results(out).load(scheduler=dask.threaded.get)
    # dask dedupes identical all-NaN arrays: un-share them
    result = template.compute(scheduler=dask.threaded.get).copy(deep=True)
    for (ci, li), arrays in computed.items():
        for name, value in arrays.items():
            if name in result:
                result[name].values[ci, li] = value
    result.attrs.update(attrs)
    return result


def open_results(url: str, **kwargs: object) -> xr.Dataset:
    """A results store as tgo reads it: lazily, with the group attrs decoded (``tgo_store.store.json_attrs``)."""
    ds = xr.open_zarr(url, zarr_format=3, **kwargs)
    ds.attrs = decode_attrs(ds.attrs)
    return ds


def add_variable(result: xr.Dataset, out: str | None, name: str, values: xr.DataArray) -> xr.Dataset:
    """``values`` as variable ``name`` of the results, written beside the rest (a derived result)."""
    result = describe_results(result.assign({name: values}))
    if out:
        written = result[[name]]
        written.attrs = encode_attrs(result.attrs)  # xarray replaces the group attrs with these
        written.to_zarr(out, mode="a", zarr_format=3, consolidated=True)
    return result
