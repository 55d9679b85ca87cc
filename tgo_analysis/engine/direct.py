"""Where a block of a store slab lies in its zarr array, so the engine reads it with one zarr read.

A source's slab is a dask array over a store variable that xarray opened (``open_store``), cut
by the engine (``act.data[ci, li]``, ``UnitSource.part``) and rechunked by ``fed`` (a no-op when
its sample chunks are the store's). Computing one of its blocks through dask (``blocks[i]`` and
``compute``) culls, optimises and runs a graph on every read: about 3 ms per 8 MB block on 2 cores,
half of zarr's own read, and growing with the store's chunk count (culling walks the store-wide
read layer: 19 ms per block of a store with 60,000 chunks). ``zarr_region`` follows block ``i``'s
key down the slab's graph instead, through basic ``getitem`` tasks and aliases to the ``getter``
of xarray's ``from_array`` over a zarr array, and composes the slices into one selection of that
array: reading it gives the values dask would compute, bit for bit (``blocks.read_block``).
Anything else (a rechunk that merges chunks, arithmetic, a decoding wrapper such as CF masking,
a numpy-backed dataset, a dask without these graph types) gives None: such blocks are computed
through dask as before.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

MAX_DEPTH = 32  # getitem/alias steps followed from a block's key before giving up
Region = list[int | tuple[int, int]]  # per dimension of the zarr array: an index, or a [start, stop) range


def zarr_region(array: Any, i: int) -> tuple[Any, tuple[int | slice, ...]] | None:
    """The zarr array and basic selection that sample block ``i`` of ``array`` reads, or None when
    the block is not a plain slice of a zarr-backed store variable (``array`` must be one chunk
    along every axis but the first, as ``fed`` makes it)."""
    try:
        from dask._task_spec import Alias, Task, TaskRef
        from dask.array.chunk import getitem
        from dask.blockwise import Blockwise
        from dask.highlevelgraph import MaterializedLayer
    except ImportError:  # another dask: its graphs are not read here
        return None
    if any(n != 1 for n in array.numblocks[1:]):
        return None
    layers = getattr(array.__dask_graph__(), "layers", None)
    if layers is None:
        return None
    key: Any = (array.name, i, *([0] * (array.ndim - 1)))
    indices: list[tuple] = []  # getitem indices met from the block down to the read
    for _ in range(MAX_DEPTH):
        layer = layers.get(key[0]) if isinstance(key, tuple) and key else None
        if isinstance(layer, Blockwise):
            found = _read_of(layer, key, layers)
            if found is None:
                return None
            zarray, region = found
            for index in reversed(indices):
                region = _apply(region, index)
                if region is None:
                    return None
            selection = tuple(r if isinstance(r, int) else slice(*r) for r in region)
            shape = tuple(r[1] - r[0] for r in region if not isinstance(r, int))
            want = (array.chunks[0][i], *(c[0] for c in array.chunks[1:]))
            return (zarray, selection) if shape == want else None
        if not isinstance(layer, MaterializedLayer):
            return None
        task = layer.mapping.get(key)
        if isinstance(task, Alias):
            key = task.target
        elif (isinstance(task, Task) and task.func in (getitem, operator.getitem) and not task.kwargs and len(task.args) == 2
              and isinstance(task.args[0], TaskRef) and isinstance(task.args[1], tuple)):
            indices.append(task.args[1])
            key = task.args[0].key
        else:
            return None
    return None


def _read_of(layer: Any, key: tuple, layers: Any) -> tuple[Any, Region] | None:
    """The zarr array and region of ``key`` in a ``from_array`` read layer (dask's ``getter`` over
    xarray's lazy indexing adapter, no lock, no fancy options), or None for any other blockwise layer."""
    from dask._task_spec import TaskRef
    from dask.array.core import getter, getter_inline, getter_nofancy
    from dask.highlevelgraph import MaterializedLayer
    from dask.layers import ArraySliceDep

    task = getattr(layer, "task", None)
    if (getattr(task, "func", None) not in (getter, getter_nofancy, getter_inline) or task.kwargs
            or layer.new_axes or layer.concatenate or len(layer.indices) != 2):
        return None
    (source, none), (dep_name, dep_index) = layer.indices
    dep = layer.io_deps.get(dep_name)
    if (task.args != (TaskRef("__dask_blockwise__0"), TaskRef("__dask_blockwise__1")) or none is not None
            or not isinstance(source, TaskRef) or not isinstance(dep, ArraySliceDep)
            or tuple(dep_index) != tuple(layer.output_indices) or len(key) != len(dep_index) + 1):
        return None
    original = layers.get(source.key)
    if not isinstance(original, MaterializedLayer) or source.key not in original.mapping:
        return None
    zarray = _zarr_array(original.mapping[source.key])
    if zarray is None:
        return None
    slices = dep[tuple(key[1:])]
    if len(slices) != zarray.ndim:
        return None
    return zarray, [(int(s.start), int(s.stop)) for s in slices]


def _zarr_array(node: Any) -> Any:
    """The zarr array under xarray's lazy wrappers when they only pass reads through (no decoding,
    no lazy selection), else None."""
    import zarr
    from xarray.backends.zarr import ZarrArrayWrapper
    from xarray.core.indexing import (
        CopyOnWriteArray,
        ImplicitToExplicitIndexingAdapter,
        LazilyIndexedArray,
    )

    dtype = getattr(node, "dtype", None)
    for _ in range(8):
        if isinstance(node, ImplicitToExplicitIndexingAdapter | CopyOnWriteArray):
            node = node.array
        elif isinstance(node, LazilyIndexedArray):
            if any(k != slice(None) for k in node.key.tuple):
                return None
            node = node.array
        elif isinstance(node, ZarrArrayWrapper):
            node = node.get_array()
        elif isinstance(node, zarr.Array):
            return node if node.dtype == dtype else None
        else:
            return None
    return None


def _apply(region: Region, index: tuple) -> Region | None:
    """``region`` cut by a basic numpy index over its ranged dimensions (ints and step-1 slices)."""
    kept = [d for d, r in enumerate(region) if not isinstance(r, int)]
    if len(index) > len(kept):
        return None
    out = list(region)
    for d, ix in zip(kept, index, strict=False):
        start, stop = region[d]
        n = stop - start
        if isinstance(ix, slice):
            a, b, step = ix.indices(n)
            if step != 1:
                return None
            out[d] = (start + a, start + max(a, b))
        elif isinstance(ix, int | np.integer) and not isinstance(ix, bool):
            k = int(ix) + (n if ix < 0 else 0)
            if not 0 <= k < n:
                return None
            out[d] = start + k
        else:
            return None
    return out
