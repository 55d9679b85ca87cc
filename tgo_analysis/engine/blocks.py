"""Reading one (checkpoint, layer) block by block: the ``Block`` records a fold consumes.

A multi-slab unit (SPEC section 6) adds ``others``: more (checkpoint, layer) slabs of the same
samples, read block for block with the first, so a statistic sees every slab's rows at once.

A ``UnitSource`` holds the layer's lazy (sample, token, feature) activations and, when the
store has them, the per-(sample, token) arrays and gradients, unevaluated (dask would compute
collections passed as task arguments; ``LazySlab`` stops that). ``read_blocks`` yields the
sample blocks in order, reading the next one on a thread while the caller works, and cuts
blocks larger than ``max_rows`` samples into pieces.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    """Sample block ``i`` of a dask array, computed synchronously (no client lookup)."""
    from dask.local import get_sync  # a function, so dask does not go looking for a client

    from tgo_store.store.integrity import checked_read, dask_block_origin

    block = array.blocks[i]  # damaged data (checksum, NaN/Inf) raises one line naming its block
    return checked_read(lambda: block.compute(scheduler=get_sync), lambda: dask_block_origin(block))


def prefetched(array: Any) -> Iterator[np.ndarray]:
    """The sample blocks of a dask array in order, the next one read while the caller works."""
    n = array.numblocks[0]
    if n == 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tgo-prefetch") as pool:
        pending = pool.submit(read_block, array, 0)
        for i in range(n):
            block = pending.result()
            if i + 1 < n:
                pending = pool.submit(read_block, array, i + 1)
            yield block


def _read_all(source: UnitSource, i: int) -> tuple[np.ndarray, dict[str, Any]]:
    more: dict[str, Any] = {k: read_block(v.array, i) for k, v in source.extras.items()}
    if source.others:
        more["others"] = tuple(read_block(o.array, i) for o in source.others)
    return read_block(source.activations.array, i), more


def read_blocks(source: UnitSource, max_rows: int | None = None) -> Iterator[Block]:
    """``Block`` records of every sample block, in sample order, at most ``max_rows`` samples each."""
    act = source.activations.array
    act = act.rechunk({0: act.chunks[0], 1: -1, 2: -1}) if act.ndim == 3 else act
    extras = {k: LazySlab(v.array.rechunk({0: act.chunks[0]})) for k, v in source.extras.items()}
    others = tuple(LazySlab(o.array.rechunk({0: act.chunks[0], 1: -1, 2: -1})) for o in source.others)
    source = UnitSource(LazySlab(act), extras, others, first_sample=source.first_sample,
                        first_token=source.first_token)
    n, start, tokens = act.numblocks[0], source.first_sample, (source.first_token, source.first_token + act.shape[1])
    if n == 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tgo-prefetch") as pool:
        pending = pool.submit(_read_all, source, 0)
        for i in range(n):
            x, more = pending.result()
            if i + 1 < n:
                pending = pool.submit(_read_all, source, i + 1)
            step = max_rows or x.shape[0]
            for lo in range(0, x.shape[0], step):
                hi = min(x.shape[0], lo + step)
                yield Block(x[lo:hi], tokens, np.arange(start + lo, start + hi),
                            **{k: (tuple(o[lo:hi] for o in v) if k == "others" else v[lo:hi])
                               for k, v in more.items()})
            start += x.shape[0]
            del x, more
