"""The one reduction every statistic goes through: a sequential fold over sample blocks.

For one (checkpoint, layer), ``reduce_unit`` makes one pass over the sample blocks per token
range of the ``Plan`` (``tgo_analysis.engine.budget`` sizes the ranges so the accumulators fit the
memory budget). Each block is read once per pass and shared by the threads: every thread
folds its own token sub-range of the block into that sub-range's accumulators, so the
accumulators of a pass add up to one full-size partial, never one per thread or per tree
level. Statistics that need every token (``token_split = False``) are folded in the first
pass. Per-token results are stitched along ``token``; a statistic with ``join_tokens`` merges
the partials of its token ranges instead (all tokens concatenated).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_analysis.engine.blocks import LazySlab, UnitSource, read_blocks
from tgo_analysis.statistics.base import Block, Context, StatisticBase, Variable

_BLAS: Any = None


def one_blas_thread() -> Any:
    """A context with one BLAS thread: the fold runs one thread per core itself.

    The threadpoolctl controller is built once per process (building it scans the loaded
    libraries: 2.6 ms); entering its limit costs 0.05 ms.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class Plan:
    """Token ranges, one pass over the blocks each; threads per block; rows per fed block."""

    passes: tuple[tuple[int, int], ...]
    threads: int = 1
    max_rows: int | None = None


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) cut into at most ``parts`` contiguous non-empty ranges of near-equal size."""
    cuts = np.linspace(lo, hi, min(parts, hi - lo) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def _empty(variables: Sequence[Variable]) -> dict[str, np.ndarray]:
    return {v.name: np.full(v.shape, v.fill, dtype=v.dtype) for v in variables}


def _put(out: dict[str, np.ndarray], arrays: dict[str, np.ndarray], tokens: tuple[int, int] | None) -> None:
    for name, value in arrays.items():
        if name in out:
            target = out[name] if tokens is None else out[name][tokens[0]:tokens[1]]
            target[...] = value


def _fold_into(partials: dict, key: Any, stats: Sequence[StatisticBase], block: Block, ctx: Context) -> None:
    """Fold ``block`` into ``partials[(stat name, key)]`` for each statistic (one thread's share)."""
    for s in stats:
        partials[(s.name, key)] = s.fold(partials.get((s.name, key)), block, ctx)


def _fold_pass(source: UnitSource, split: Sequence[StatisticBase], whole: Sequence[StatisticBase],
               ranges: Sequence[tuple[int, int]], ctx: Context, plan: Plan, pool: ThreadPoolExecutor) -> dict:
    """One read of every block: token sub-ranges and whole-token statistics folded in parallel."""
    partials: dict[tuple[str, Any], Any] = {}
    for block in read_blocks(source, plan.max_rows):
        jobs = [pool.submit(_fold_into, partials, r, split, block.token_range(*r), ctx) for r in ranges]
        jobs += [pool.submit(_fold_into, partials, None, [s], block, ctx) for s in whole]
        for job in jobs:
            job.result()
    return partials


def _aggregate_into(out: dict[str, np.ndarray], partials: dict, split: Sequence[StatisticBase],
                    whole: Sequence[StatisticBase], ranges: Sequence[tuple[int, int]], joined: dict[str, Any],
                    ctx: Context, pool: ThreadPoolExecutor) -> None:
    """Aggregate one pass's partials into ``out`` (token ranges in parallel); joined ones wait in ``joined``."""
    for s in (s for s in split if s.joins_tokens):
        for r in ranges:
            joined[s.name] = s.join_tokens(joined.get(s.name), partials.pop((s.name, r)))
    jobs = [(r, pool.submit(s.aggregate, partials.pop((s.name, r)), ctx))
            for s in split if not s.joins_tokens for r in ranges]
    jobs += [(None, pool.submit(s.aggregate, partials.pop((s.name, None)), ctx)) for s in whole]
    for r, job in jobs:
        _put(out, job.result().arrays, r)


def _aggregate_joined(out: dict[str, np.ndarray], split: Sequence[StatisticBase], joined: dict[str, Any],
                      ctx: Context) -> None:
    for s in split:
        if s.name in joined:
            _put(out, s.aggregate(joined.pop(s.name), ctx).arrays, None)


def reduce_unit(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, plan: Plan,
                on_pass: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Every statistic's result arrays for one (checkpoint, layer), named as its variables."""
    split = [s for s in stats if s.token_split]
    whole = [s for s in stats if not s.token_split]
    out = _empty([v for s in stats for v in s.variables(ctx)])
    joined: dict[str, Any] = {}
    with one_blas_thread(), ThreadPoolExecutor(max(1, plan.threads), thread_name_prefix="tgo-fold") as pool:
        for index, (lo, hi) in enumerate(plan.passes):
            if on_pass is not None:
                on_pass(index, len(plan.passes))
            ranges = split_range(lo, hi, plan.threads) if split else []
            now = whole if index == 0 else []
            partials = _fold_pass(source, split, now, ranges, ctx, plan, pool)
            _aggregate_into(out, partials, split, now, ranges, joined, ctx, pool)
        _aggregate_joined(out, split, joined, ctx)
    return out


def fold_partials(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, plan: Plan,
                  ranges: Sequence[tuple[int, int]]) -> dict:
    """One read of ``source``'s blocks: un-aggregated partials keyed (statistic name, token range
    or None), token-split statistics over the given ``ranges`` (a cluster merges these)."""
    split = [s for s in stats if s.token_split]
    whole = [s for s in stats if not s.token_split]
    with one_blas_thread(), ThreadPoolExecutor(max(1, plan.threads), thread_name_prefix="tgo-fold") as pool:
        return _fold_pass(source, split, whole, ranges if split else [], ctx, plan, pool)


def partial_results(partials: dict, stats: Sequence[StatisticBase], ctx: Context, ranges: Sequence[tuple[int, int]],
                    threads: int, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Result arrays from partials keyed as ``fold_partials`` makes them (into ``out`` when given)."""
    split = [s for s in stats if s.token_split]
    whole = [s for s in stats if not s.token_split]
    out = _empty([v for s in stats for v in s.variables(ctx)]) if out is None else out
    joined: dict[str, Any] = {}
    with one_blas_thread(), ThreadPoolExecutor(max(1, threads), thread_name_prefix="tgo-fold") as pool:
        _aggregate_into(out, dict(partials), split, whole, ranges if split else [], joined, ctx, pool)
    _aggregate_joined(out, split, joined, ctx)
    return out


def empty_results(stats: Sequence[StatisticBase], ctx: Context) -> dict[str, np.ndarray]:
    """Every statistic's result arrays, filled with their fill values."""
    return _empty([v for s in stats for v in s.variables(ctx)])


def put_results(out: dict[str, np.ndarray], arrays: dict[str, np.ndarray], tokens: tuple[int, int] | None) -> None:
    """Copy ``arrays`` into ``out``, at token range ``tokens`` (all of them for None)."""
    _put(out, arrays, tokens)


def reduce_array(stat: StatisticBase, x: np.ndarray, ctx: Context | None = None, block_rows: int = 64,
                 plan: Plan | None = None) -> dict[str, np.ndarray]:
    """One statistic on an in-memory (N, T, D) array, through ``reduce_unit`` (for tests)."""
    import dask.array as da

    n, t, d = x.shape
    ctx = ctx or Context(n, t, d, n_rank=d, itemsize=x.dtype.itemsize, metrics=stat.metrics)
    source = UnitSource(LazySlab(da.from_array(x, chunks=(block_rows, t, d))))
    ctx = dataclasses.replace(ctx, source=source)
    return reduce_unit(source, [stat], ctx, plan or Plan(((0, t),), threads=2))
