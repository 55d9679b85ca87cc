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

from tgo_analysis.reductions.base import Context, Statistic
from tgo_analysis.reductions.engine import Plan
from tgo_store.errors import TgoError

DEFAULT_FRACTION = 0.5  # of RAM (or of a Dask worker's memory limit)
TEMP_COPIES = 3  # float64 copies of a fed block a statistic may hold at once (cast, centred, units)
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_budget(budget: int | float | str | None) -> int:
    """Bytes from 4e9, "4GB", "512MiB" or None (the default budget)."""
    if budget is None:
        return default_budget()
    if isinstance(budget, (int, float)):
        value = float(budget)
    else:
        text = budget.strip().upper().replace(" ", "")
        digits = text.rstrip("KMGTIB")
        try:
            value = float(digits) * _UNITS[text[len(digits):]]
        except (KeyError, ValueError):
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


def _temp_bytes(stat: Statistic, ctx: Context, rows: int) -> int:
    """Temporaries of one fed block: the statistic's own estimate, else TEMP_COPIES float64 copies."""
    own = getattr(stat, "temp_bytes", None)
    return own(ctx, rows) if own is not None else TEMP_COPIES * rows * ctx.n_tokens * ctx.n_features * 8


def _fixed_bytes(stats: Sequence[Statistic], ctx: Context, rows: int, threads: int) -> int:
    """What does not shrink with the token group: blocks in flight, temporaries, whole-token partials."""
    t, d = ctx.n_tokens, ctx.n_features
    read = 2 * rows * t * d * ctx.itemsize  # the block being folded and the one being prefetched
    temps = max((_temp_bytes(s, ctx, rows) for s in stats), default=0)
    scratch = threads * 4 * d * d * 8  # per thread: a token's co-moment, merge scratch, eigvalsh workspace
    return read + temps + scratch + sum(s.partial_bytes(ctx, t) for s in stats if not s.token_split)


def plan_unit(stats: Sequence[Statistic], ctx: Context, budget: int, block_rows: int,
              threads: int | None = None) -> Plan:
    """Token groups (passes) whose accumulators fit ``budget`` bytes; TgoError when none can."""
    threads = threads or default_threads()
    split = [s for s in stats if s.token_split]
    t, d = ctx.n_tokens, ctx.n_features
    # feed at most the rows whose temporaries take a quarter of the budget
    per_row = max(1, max((_temp_bytes(s, ctx, 1) for s in stats), default=1))
    rows = max(1, min(block_rows, budget // (4 * per_row)))

    def need(tokens: int) -> int:
        return _fixed_bytes(stats, ctx, rows, threads) + sum(s.partial_bytes(ctx, tokens) for s in split)

    if not split:
        if need(0) > budget:
            raise TgoError(f"memory budget {_size(budget)} is below the {_size(need(0))} this analysis needs for one "
                           "block; raise --memory-budget")
        return Plan(((0, t),), threads, rows if rows < block_rows else None)
    if need(1) > budget:
        raise TgoError(f"memory budget {_size(budget)} cannot hold one token's accumulators ({_size(need(1))} with "
                       f"the blocks in flight, {d} features); raise --memory-budget to at least {_size(need(1))}")
    lo, hi = 1, t
    while lo < hi:  # the largest group that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= budget else (lo, mid - 1)
    n_passes = math.ceil(t / lo)
    size = math.ceil(t / n_passes)
    passes = tuple((a, min(t, a + size)) for a in range(0, t, size))
    return Plan(passes, threads, rows if rows < block_rows else None)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
