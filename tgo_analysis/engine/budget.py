"""The memory budget of an analysis, and every plan that honours it, made before anything is read.

Per-token float64 accumulators dominate: a ViT-B/8 layer (785 tokens, 768 features) needs
3.7 GB of co-moments. ``plan_unit`` gives every (checkpoint, layer) the largest token groups
whose accumulators, plus the blocks in flight and the fold's temporaries, fit the budget; one
pass over the sample blocks per group (reads x passes). ``plan_groups`` does the same for a
multi-slab unit (each statistic's own pass groups), and ``plan_split`` cuts a unit for a
cluster's workers (token ranges, sample ranges, the combine tree's width). The statistics'
declared ``partial_bytes`` and ``temp_bytes`` are all they read. A budget that cannot hold even
one token is refused before anything is read. The default is a fraction of the machine's RAM,
or of the Dask worker's memory limit on a cluster; ``parse_budget`` is the one parser.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.utils import format_bytes, parse_bytes

from tgo_analysis.engine.graph import Plan, split_range
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.errors import TgoError

DEFAULT_FRACTION = 0.5  # of RAM (or of a Dask worker's memory limit)
PIECES_PER_WORKER = 2  # tasks per worker a cluster analysis aims for, so no worker waits long for the last one
MAX_SPLIT_EVERY = 8


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


@dataclass(frozen=True)
class Workers:
    """What the planner knows of the cluster: worker count, threads and budget of the smallest one."""

    count: int
    threads: int
    budget: int


@dataclass(frozen=True)
class UnitSplit:
    """How one unit is cut: token-range tasks, sample-range tasks and their merge tree."""

    per_token: tuple[str, ...]  # statistics folded by token range (results, no partial shipped)
    merged: tuple[str, ...]  # statistics folded by sample range, partials merged
    token_tasks: tuple[tuple[int, int], ...]
    sample_tasks: tuple[tuple[int, int], ...]
    ranges: tuple[tuple[int, int], ...]  # token sub-ranges of a sample task's token-split partials
    threads: int
    max_rows: int | None
    split_every: int
    token_task_bytes: int
    sample_task_bytes: int
    merge_bytes: int  # one partial of the merged statistics: what each merge input ships
    read_amplification: float  # bytes read / the unit's bytes

    @property
    def merges(self) -> int:
        n, count = len(self.sample_tasks), 0
        while n > 1:
            n = math.ceil(n / self.split_every)
            count += n
        return count

    def record(self) -> dict[str, Any]:
        return {"token_tasks": len(self.token_tasks), "sample_tasks": len(self.sample_tasks),
                "per_token": list(self.per_token), "merged": list(self.merged), "threads": self.threads,
                "split_every": self.split_every, "merges": self.merges, "merge_input_bytes": self.merge_bytes,
                "token_task_bytes": self.token_task_bytes, "sample_task_bytes": self.sample_task_bytes,
                "read_amplification": round(self.read_amplification, 4)}


def _ranges_on(bounds: Sequence[int], pieces: int) -> tuple[tuple[int, int], ...]:
    """``pieces`` contiguous ranges whose ends lie on ``bounds`` (chunk edges), near-equal in chunks."""
    groups = split_range(0, len(bounds) - 1, pieces)
    return tuple((int(bounds[a]), int(bounds[b])) for a, b in groups)


def _amplification(ranges: Sequence[tuple[int, int]], chunk: int, total: int) -> float:
    """Tokens read (whole inner chunks) over tokens wanted, for these token ranges."""
    read = sum(min(total, math.ceil(hi / chunk) * chunk) - (lo // chunk) * chunk for lo, hi in ranges)
    return read / total


def plan_split(stats: Sequence[StatisticBase], ctx: Context, workers: Workers, n_units: int,
               block_bounds: Sequence[int], token_chunk: int) -> UnitSplit:
    """The cut of one unit (see the module docstring); TgoError when no cut fits the budget."""
    t, d, n = ctx.n_tokens, ctx.n_features, ctx.n_samples
    budget, k = workers.budget, workers.threads
    wanted = max(1, math.ceil(PIECES_PER_WORKER * workers.count / max(1, n_units)))
    per_token = [s for s in stats if s.token_split and not s.joins_tokens]
    merged = [s for s in stats if s not in per_token]
    block_rows = int(max(np.diff(block_bounds), default=1))
    base = plan_unit(stats, ctx, budget, block_rows, k)
    rows = base.max_rows or block_rows
    unit_bytes = n * t * d * ctx.itemsize
    token_bounds = [*range(0, t, token_chunk), t]
    blocks = len(block_bounds) - 1

    def token_need(lo: int, hi: int) -> int:
        part = dataclasses.replace(ctx, n_tokens=hi - lo)
        return _fixed_bytes(per_token, part, rows, k) + sum(s.partial_bytes(ctx, hi - lo) for s in per_token)

    def sample_need(group: Sequence[StatisticBase]) -> int:
        return _fixed_bytes(group, ctx, rows, k) + sum(s.partial_bytes(ctx, t) for s in group if s.token_split)

    def partial(group: Sequence[StatisticBase]) -> int:
        return sum(s.partial_bytes(ctx, t) for s in group)

    def sample_pieces(group: Sequence[StatisticBase]) -> tuple[int, int]:
        """Sample ranges worth their merge (a range reads more than its partial ships) and the tree width."""
        size = max(1, partial(group))
        width = min(MAX_SPLIT_EVERY, budget // size - 1)
        if width < 2:
            return 1, 2
        return max(1, min(wanted, blocks, unit_bytes // size)), width

    # per-token statistics by sample range only when the store has one token chunk (every token
    # range would read all of it) and a sample cut is worth its merge
    by_samples = bool(per_token) and len(token_bounds) == 2 and sample_need(stats) <= budget \
        and sample_pieces(stats)[0] > 1
    if by_samples:
        merged, per_token = list(stats), []
    token_tasks: tuple[tuple[int, int], ...] = ()
    amplification = 0.0
    if per_token:
        # as many token ranges as the cluster wants (on chunk edges when there are chunks enough,
        # else even: a range then reads the chunks it overlaps), more when the budget binds
        # (a range that is not whole chunks re-reads the chunks it shares, so with fewer token
        # chunks than wanted ranges the balance of PIECES_PER_WORKER is not worth its reads: one
        # range per worker, or per chunk)
        chunks = len(token_bounds) - 1
        aim = wanted if chunks >= wanted else max(chunks, math.ceil(workers.count / max(1, n_units)))
        pieces = max(min(aim, t), len(plan_unit(per_token, ctx, budget, rows, k).passes))
        while True:
            token_tasks = _ranges_on(token_bounds, pieces) if pieces < len(token_bounds) else \
                tuple(split_range(0, t, pieces))
            if all(token_need(lo, hi) <= budget for lo, hi in token_tasks) or pieces >= t:
                break
            pieces += 1
        amplification += _amplification(token_tasks, token_chunk, t)
    sample_tasks: tuple[tuple[int, int], ...] = ()
    every = 2
    if merged:
        if sample_need(merged) > budget:
            raise TgoError(f"memory budget {format_bytes(budget)} per worker is below the {format_bytes(sample_need(merged))} that "
                           f"{', '.join(s.name for s in merged)} need for one sample block of {t} tokens x {d} "
                           "features; raise --memory-budget or the workers' --memory-limit")
        pieces, every = sample_pieces(merged)
        sample_tasks = _ranges_on(block_bounds, pieces)
        amplification += 1.0
    merge_input = partial(merged) if merged else 0
    token_bytes = max((token_need(lo, hi) for lo, hi in token_tasks), default=0)
    return UnitSplit(tuple(s.name for s in per_token), tuple(s.name for s in merged), token_tasks, sample_tasks,
                     tuple(split_range(0, t, k)), k, base.max_rows, every, token_bytes,
                     sample_need(merged) if merged else 0, merge_input, amplification)


