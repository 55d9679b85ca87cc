"""Reading one (checkpoint, layer) block by block: the ``Block`` records a fold consumes.

A multi-slab unit (SPEC section 6) adds ``others``: more (checkpoint, layer) slabs of the same
samples, read block for block with the first, so a statistic sees every slab's rows at once.

A ``UnitSource`` holds the layer's lazy (sample, token, feature) activations and, when the
store has them, the per-(sample, token) arrays and gradients, unevaluated (dask would compute
collections passed as task arguments; ``LazySlab`` stops that). ``fed`` rechunks it to one
chunk per sample block with every token; ``read_chunk`` reads one chunk as a ``Block`` (the
engine's read tasks, ``engine.graph``) and ``read_rows`` a fit's sample rows (``fit_rows``).
``read_block`` reads a slab's block with one zarr read of its region when the slab is a plain
slice of a store variable (``engine.direct``: no dask graph built and run per block), and
through dask otherwise (``compute_block``).
Nothing here runs tasks: when and where a chunk is read is the graph's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tgo_analysis.engine.direct import zarr_region
from tgo_analysis.statistics.base import Block


class LazySlab:
    """A dask array handed to a task unevaluated; the task reads its blocks itself, so a layer
    never sits in memory whole."""

    __slots__ = ("array",)

    def __init__(self, array: Any):
        self.array = array

    def __getstate__(self) -> Any:
        return self.array

    def __setstate__(self, state: Any) -> None:
        self.array = state


@dataclass(frozen=True)
class UnitSource:
    """One (checkpoint, layer): activations (sample, token, feature) and optional extras keyed
    by ``OPTIONAL`` names, each a LazySlab of a dask array with the same sample chunks."""

    activations: LazySlab
    extras: dict[str, LazySlab] = field(default_factory=dict)
    others: tuple[LazySlab, ...] = ()  # further slabs read in lockstep (multi-slab units, ``Block.others``)
    first_sample: int = 0  # where this source starts in the unit (a cluster task reads a part)
    first_token: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.activations.array.shape)

    @property
    def itemsize(self) -> int:
        return int(self.activations.array.dtype.itemsize)

    def block_rows(self) -> int:
        return int(max(self.activations.array.chunks[0]))

    def part(self, samples: tuple[int, int] | None = None, tokens: tuple[int, int] | None = None) -> UnitSource:
        """Samples [a, b) and tokens [lo, hi) of this source, still lazy: a task reads only its own
        part (dask fuses the slice into the zarr read, so a token range reads its inner chunks only)."""
        a, b = samples or (0, self.shape[0])
        lo, hi = tokens or (0, self.shape[1])

        def cut(array: Any) -> LazySlab:
            return LazySlab(array[a:b, lo:hi])

        return UnitSource(cut(self.activations.array), {k: cut(v.array) for k, v in self.extras.items()},
                          tuple(cut(o.array) for o in self.others), first_sample=self.first_sample + a,
                          first_token=self.first_token + lo)


def read_block(array: Any, i: int) -> np.ndarray:
    """Sample block ``i`` of a dask array: one zarr read of its region when it is a plain slice of a
    store variable (``engine.direct``), else computed through dask, synchronously (no client lookup).
    Damaged data (checksum, NaN/Inf) raises one line naming its block either way."""
    from tgo_store.store.integrity import checked_read, dask_block_origin

    region = zarr_region(array, i)
    if region is not None:
        zarray, selection = region
        return checked_read(lambda: zarray[selection], lambda: dask_block_origin(array.blocks[i]))
    return compute_block(array, i)


def compute_block(array: Any, i: int) -> np.ndarray:
    """Sample block ``i`` of a dask array computed through dask (any array: the reads ``zarr_region``
    does not cover, and the reference its direct reads are tested against)."""
    from dask.local import get_sync  # a function, so dask does not go looking for a client

    from tgo_store.store.integrity import checked_read, dask_block_origin

    block = array.blocks[i]
    return checked_read(lambda: block.compute(scheduler=get_sync), lambda: dask_block_origin(block))


def _read_all(source: UnitSource, i: int) -> tuple[np.ndarray, dict[str, Any]]:
    more: dict[str, Any] = {k: read_block(v.array, i) for k, v in source.extras.items()}
    if source.others:
        more["others"] = tuple(read_block(o.array, i) for o in source.others)
    return read_block(source.activations.array, i), more


def fed(source: UnitSource) -> UnitSource:
    """``source`` rechunked for reading: one chunk per sample block, every token and feature in it,
    the extras and other slabs on the same sample chunks."""
    act = source.activations.array
    act = act.rechunk({0: act.chunks[0], 1: -1, 2: -1}) if act.ndim == 3 else act
    extras = {k: LazySlab(v.array.rechunk({0: act.chunks[0]})) for k, v in source.extras.items()}
    others = tuple(LazySlab(o.array.rechunk({0: act.chunks[0], 1: -1, 2: -1})) for o in source.others)
    return UnitSource(LazySlab(act), extras, others, first_sample=source.first_sample,
                      first_token=source.first_token)


def chunk_count(source: UnitSource) -> int:
    """Sample chunks of a ``fed`` source."""
    return int(source.activations.array.numblocks[0])


def read_chunk(source: UnitSource, i: int) -> Block:
    """Sample chunk ``i`` of a ``fed`` source as a ``Block`` (every slab and extra read)."""
    act = source.activations.array
    start = source.first_sample + int(sum(act.chunks[0][:i]))
    x, more = _read_all(source, i)
    tokens = (source.first_token, source.first_token + act.shape[1])
    return Block(x, tokens, np.arange(start, start + x.shape[0]), **more)


def read_rows(source: UnitSource, rows: np.ndarray) -> Block:
    """Sample rows ``rows`` (sorted) of the unit, every token, as one ``Block`` (a fit's subsample)."""
    from dask.local import get_sync

    def take(array: Any) -> np.ndarray:
        return np.asarray(array[rows].compute(scheduler=get_sync))

    more: dict[str, Any] = {k: take(v.array) for k, v in source.extras.items()}
    if source.others:
        more["others"] = tuple(take(o.array) for o in source.others)
    tokens = (source.first_token, source.first_token + source.shape[1])
    return Block(take(source.activations.array), tokens, source.first_sample + np.asarray(rows), **more)
