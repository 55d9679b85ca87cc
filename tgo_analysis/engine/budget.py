"""The memory budget of an analysis, and the plan of passes over token groups that honours it.

Per-token float64 accumulators dominate: a ViT-B/8 layer (785 tokens, 768 features) needs
3.7 GB of co-moments. ``plan_unit`` gives every (checkpoint, layer) the largest token groups
whose accumulators, plus the blocks in flight and the fold's temporaries, fit the budget; one
pass over the sample blocks per group (reads x passes). A budget that cannot hold even one
token is refused before anything is read. The default is a fraction of the machine's RAM, or
of the Dask worker's memory limit when running on a cluster worker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from dask.utils import format_bytes, parse_bytes

from tgo_analysis.engine.graph import Plan
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.errors import TgoError

DEFAULT_FRACTION = 0.5  # of RAM (or of a Dask worker's memory limit)


def parse_budget(budget: int | float | str | None) -> int:
    """Bytes from 4e9, "4GB", "512MiB" (``dask.utils.parse_bytes``) or None (the default budget)."""
    if budget is None:
        return default_budget()
    if isinstance(budget, (int, float)):
        value = float(budget)
    else:
        try:
            value = float(parse_bytes(budget))
        except (ValueError, TypeError):
            raise TgoError(f"cannot read memory budget '{budget}'; give bytes or a size such as 4GB or 512MiB") from None
    if value <= 0:
        raise TgoError(f"memory budget {budget} is not positive; give a size such as 4GB")
    return int(value)


def default_budget() -> int:
    """DEFAULT_FRACTION of the Dask worker's memory limit when inside one, else of the RAM."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
        if limit:
            return int(DEFAULT_FRACTION * limit)
    except (ImportError, ValueError, AttributeError):
        pass
    import psutil

    return int(DEFAULT_FRACTION * psutil.virtual_memory().total)


def default_threads() -> int:
    """Threads that fold one block: the CPUs this process may use (a Dask worker's threads)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _fixed_bytes(stats: Sequence[StatisticBase], ctx: Context, rows: int, threads: int, lanes: int = 1) -> int:
    """What does not shrink with the token group: blocks in flight, temporaries, whole-token partials
    (``lanes``: sample ranges folded at once, each with its own blocks and partials)."""
    t, d = ctx.n_tokens, ctx.n_features
    read = lanes * 2 * rows * t * d * ctx.itemsize  # per sample range: the block being folded and the next one
    temps = lanes * max((s.temp_bytes(ctx, rows) for s in stats), default=0)
    scratch = threads * 4 * d * d * 8  # per thread: a token's co-moment, merge scratch, eigvalsh workspace
    return read + temps + scratch + lanes * sum(s.partial_bytes(ctx, t) for s in stats if not s.token_split)


def plan_unit(stats: Sequence[StatisticBase], ctx: Context, budget: int, block_rows: int,
              threads: int | None = None) -> Plan:
    """Token groups (passes) whose accumulators fit ``budget`` bytes; TgoError when none can."""
    threads = threads or default_threads()
    split = [s for s in stats if s.token_split]
    t, d = ctx.n_tokens, ctx.n_features
    # feed at most the rows whose temporaries take a quarter of the budget
    per_row = max(1, max((s.temp_bytes(ctx, 1) for s in stats), default=1))
    rows = max(1, min(block_rows, budget // (4 * per_row)))

    # statistics that see every token fold one sample range per thread when no per-token statistic
    # shares the pass (engine.graph.sample_lanes)
    lanes = 1 if split else threads

    def need(tokens: int) -> int:
        return _fixed_bytes(stats, ctx, rows, threads, lanes) + sum(s.partial_bytes(ctx, tokens) for s in split)

    if not split:
        if need(0) > budget:
            raise TgoError(f"memory budget {format_bytes(budget)} is below the {format_bytes(need(0))} this analysis needs for one "
                           "block; raise --memory-budget")
        return Plan(((0, t),), threads, rows if rows < block_rows else None)
    if need(1) > budget:
        raise TgoError(f"memory budget {format_bytes(budget)} cannot hold one token's accumulators ({format_bytes(need(1))} with "
                       f"the blocks in flight, {d} features); raise --memory-budget to at least {format_bytes(need(1))}")
    lo, hi = 1, t
    while lo < hi:  # the largest group that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= budget else (lo, mid - 1)
    n_passes = math.ceil(t / lo)
    size = math.ceil(t / n_passes)
    passes = tuple((a, min(t, a + size)) for a in range(0, t, size))
    return Plan(passes, threads, rows if rows < block_rows else None)


def plan_groups(stats: Sequence[StatisticBase], ctx: Context, budget: int, block_rows: int, n_slabs: int,
                threads: int | None = None) -> tuple[int, dict[str, tuple]]:
    """Rows per fed block and each multi-slab statistic's pass groups (``groups``) within ``budget``.

    What does not shrink: the blocks in flight of every slab read in lockstep, and the fold's
    temporaries; each statistic's groups must fit what is left (its ``groups`` hook refuses
    with a TgoError naming the shortfall when even the smallest group does not).
    """
    threads = threads or default_threads()
    t, d = ctx.n_tokens, ctx.n_features
    per_row = max(1, max((s.temp_bytes(ctx, 1) for s in stats), default=1) + 2 * n_slabs * t * d * ctx.itemsize)
    rows = max(1, min(block_rows, budget // (4 * per_row)))
    fixed = 2 * n_slabs * rows * t * d * ctx.itemsize + max((s.temp_bytes(ctx, rows) for s in stats), default=0)
    room = budget - fixed - threads * 2 * d * d * 8
    if room <= 0:
        raise TgoError(f"memory budget {format_bytes(budget)} is below the {format_bytes(fixed)} that {n_slabs} slabs "
                       "read in lockstep need for one block; raise --memory-budget")
    # statistics folded in the same pass share the room
    share = room // max(1, len(stats))
    return rows, {s.name: tuple(s.groups(ctx, share)) for s in stats}
