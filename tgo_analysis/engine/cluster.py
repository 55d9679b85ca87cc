"""An analysis on a Dask cluster: every unit split across the workers, one graph, written unit by unit.

``plan_split`` chooses how one (checkpoint, layer) is cut, from the worker memory budget, the
store's chunking, the cluster size and the number of units:

- per-token statistics (``token_split`` without ``joins_tokens``) by **token range**: each task
  reads its tokens of every sample (the store's inner chunks split the token axis, so the reads
  are disjoint; ranges lie on chunk edges when the chunks suffice), folds, aggregates and returns
  result arrays; no partial is shipped;
- statistics that need every token, and per-token ones in a store with one token chunk (where
  every token range would read all of it), by **sample range**: each task folds its sample blocks into
  partials, merged pairwise (the statistics' own ``combine``) in a tree ``split_every`` wide, and
  aggregated once. A sample split is used only where a range reads more bytes than its partial
  ships, and only where a merge (``split_every`` partials and the accumulator) fits a worker.

Every task declares what it holds as worker resources (``tgo-memory`` bytes, ``tgo-threads``),
offered to each worker here, so the scheduler never runs more on a worker than its budget; a
fold uses all of its worker's threads, as the threaded path does. ``prepare_unit`` hooks (the
tangent statistic's semi-NMF fits) are tasks too, running beside other units' folds. The whole
analysis is submitted at once; the client writes each unit and marks it done as its result
arrives (``as_completed``), so a killed client resumes from the finished units. A task is a
pure function of its inputs and merges copy before combining, so a retried task (its worker
killed) can neither lose nor double a partial.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.budget import DEFAULT_FRACTION, _fixed_bytes, parse_budget, plan_unit
from tgo_analysis.engine.graph import (
    Plan,
    empty_results,
    fold_partials,
    partial_results,
    put_results,
    reduce_unit,
    split_range,
)
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.errors import TgoError

MEMORY, THREADS = "tgo-memory", "tgo-threads"  # worker resources every analysis task declares
PIECES_PER_WORKER = 2  # tasks per worker an analysis aims for, so no worker waits long for the last one
MAX_SPLIT_EVERY = 8
RETRIES = 2  # a task that raises is retried this often; one whose worker dies is rescheduled by Dask


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


def cluster_workers(client: Any, memory_budget: Any) -> Workers:
    """The cluster's size; the budget is ``memory_budget`` per worker, or a fraction of its memory limit."""
    info = list(client.scheduler_info(n_workers=-1)["workers"].values())
    if not info:
        raise TgoError("the Dask cluster has no workers; start some (`dask worker <scheduler address>`) and re-run")
    threads = min(int(w["nthreads"]) for w in info)
    if memory_budget is not None:
        budget = parse_budget(memory_budget)
    else:
        limits = [int(w.get("memory_limit") or 0) for w in info]
        budget = int(DEFAULT_FRACTION * min(limits)) if all(limits) else parse_budget(None) // len(info)
    return Workers(len(info), max(1, threads), budget)


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
            raise TgoError(f"memory budget {_fmt(budget)} per worker is below the {_fmt(sample_need(merged))} that "
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


def _fmt(n: int) -> str:
    from dask.utils import format_bytes

    return format_bytes(n)


def _named(stats: Sequence[StatisticBase], names: Sequence[str]) -> list[StatisticBase]:
    return [s for s in stats if s.name in names]


def _no_client() -> Any:
    """Dask computations inside a task run synchronously, never back on the cluster."""
    import dask
    from dask.local import get_sync

    return dask.config.set(scheduler=get_sync)


def prepare_task(ds: LazySlab, stats: Sequence[StatisticBase], ctx: Context, ci: int, li: int) -> Context:
    """The unit's context with its ``prepare_unit`` parameters (semi-NMF fits), on a worker."""
    from tgo_analysis.engine.units import unit_context

    with _no_client():
        return unit_context(ds.array, ctx, stats, ci, li, ctx.source)


def token_task(stats: Sequence[StatisticBase], ctx: Context, source: UnitSource, lo: int, hi: int, threads: int,
               max_rows: int | None) -> dict[str, np.ndarray]:
    """Per-token results for tokens [lo, hi) of every sample: one read of those tokens only."""
    with _no_client():
        out = reduce_unit(source.part(tokens=(lo, hi)), stats, ctx, Plan(((lo, hi),), threads, max_rows))
    return {name: value[lo:hi] for name, value in out.items()}


def sample_task(stats: Sequence[StatisticBase], ctx: Context, a: int, b: int, ranges: Sequence[tuple[int, int]],
                threads: int, max_rows: int | None) -> dict:
    """Partials of samples [a, b) (every token), keyed as ``fold_partials`` makes them."""
    with _no_client():
        return fold_partials(ctx.source.part(samples=(a, b)), stats, ctx, Plan(((0, ctx.n_tokens),), threads, max_rows),
                             ranges)


def merge_task(stats: Sequence[StatisticBase], *parts: dict) -> dict:
    """Partials of consecutive sample ranges merged in order. The first is copied, never updated in
    place: it may be a result the worker still holds for a retried or sibling task."""
    by_name = {s.name: s for s in stats}
    merged = copy.deepcopy(parts[0])
    for part in parts[1:]:
        for key in merged:
            merged[key] = by_name[key[0]].combine(merged[key], part[key])
    return merged


def assemble_task(stats: Sequence[StatisticBase], ctx: Context, split: UnitSplit, tokens: Sequence[dict],
                  merged: dict | None) -> dict[str, np.ndarray]:
    """The unit's result arrays: token-range results stitched, merged partials aggregated."""
    out = empty_results([v for s in stats for v in s.variables(ctx)])
    for (lo, hi), arrays in zip(split.token_tasks, tokens, strict=True):
        put_results(out, arrays, (lo, hi))
    if merged is not None:
        partial_results(merged, _named(stats, split.merged), ctx, split.ranges, split.threads, out)
    return out


def offer_resources(client: Any, memory_budget: Any) -> None:
    """Give every worker the ``tgo-memory`` (its budget) and ``tgo-threads`` resources tasks claim."""
    from tgo_analysis.engine.budget import DEFAULT_FRACTION as fraction

    async def offer(dask_worker: Any, given: Any) -> None:
        limit = dask_worker.memory_manager.memory_limit
        budget = parse_budget(given) if given is not None else \
            int(fraction * limit) if limit else parse_budget(None)
        await dask_worker.set_resources(**{MEMORY: budget, THREADS: dask_worker.state.nthreads})

    client.run(offer, given=memory_budget)


@dataclass
class Submitted:
    """One unit's futures: the result (``assemble``) and the plan it follows."""

    ci: int
    li: int
    result: Any
    split: UnitSplit


def submit_unit(client: Any, ds_future: Any, source: UnitSource, tokens_source: UnitSource,
                stats: Sequence[StatisticBase], ctx: Context, ci: int, li: int, split: UnitSplit, run: str) -> Submitted:
    """Every task of one unit: prepare, token ranges, sample ranges, the merge tree, the assembly."""
    tag = f"c{ci}-l{li}-{run}"

    def submit(fn: Callable, *args: Any, name: str, memory: int = 0, threads: int = 0) -> Any:
        resources = {THREADS: threads or split.threads, **({MEMORY: memory} if memory else {})}
        return client.submit(fn, *args, key=f"tgo-{name}-{tag}", resources=resources, retries=RETRIES, pure=False)

    unit_ctx: Any = dataclasses.replace(ctx, source=source)
    if any(s.unit_setup for s in stats):
        unit_ctx = submit(prepare_task, ds_future, list(stats), unit_ctx, ci, li, name="prepare", threads=1)
    per_token = _named(stats, split.per_token)
    tokens = [submit(token_task, per_token, unit_ctx, tokens_source, lo, hi, split.threads, split.max_rows,
                     name=f"tokens{lo}-{hi}", memory=split.token_task_bytes) for lo, hi in split.token_tasks]
    merged = None
    if split.sample_tasks:
        group = _named(stats, split.merged)
        level = [submit(sample_task, group, unit_ctx, a, b, split.ranges, split.threads, split.max_rows,
                        name=f"samples{a}-{b}", memory=split.sample_task_bytes) for a, b in split.sample_tasks]
        depth = 0
        while len(level) > 1:
            depth += 1
            level = [submit(merge_task, group, *level[i:i + split.split_every], name=f"merge{depth}-{i}",
                            memory=(len(level[i:i + split.split_every]) + 1) * split.merge_bytes, threads=1)
                     for i in range(0, len(level), split.split_every)]
        merged = level[0]
    result = submit(assemble_task, list(stats), unit_ctx, split, tokens, merged, name="assemble",
                    memory=split.merge_bytes)
    return Submitted(ci, li, result, split)


def token_view(ds: Any, act: Any) -> tuple[Any, int]:
    """The activations as a dask array chunked by the store's inner chunks along ``token``, and the
    tokens per chunk; (None, all tokens) when the store cannot be reopened so or has one token chunk.

    Slicing tokens out of a shard-sized dask chunk still reads the whole shard (dask does not push
    the slice into the zarr read), so token-range tasks read from this view, whose chunks a token
    range selects whole: the reads of the tasks are disjoint.
    """
    import xarray as xr

    from tgo_store.store import schema as S

    n_tokens = int(act.sizes[S.TOKEN])
    inner, source = act.encoding.get("chunks"), ds.encoding.get("source")
    if not inner or not source or int(inner[3]) >= n_tokens:
        return None, n_tokens
    chunks = {S.CHECKPOINT: 1, S.LAYER: 1, S.SAMPLE: act.data.chunks[2], S.TOKEN: int(inner[3]), S.FEATURE: -1}
    try:
        view = xr.open_zarr(source, zarr_format=3, chunks=chunks)[S.ACTIVATIONS]
    except (OSError, ValueError, KeyError, TypeError):  # not a store we can reopen here: read the shards
        return None, n_tokens
    if view.shape != act.shape:
        return None, n_tokens
    return view.data, int(inner[3])


def on_cluster(ds: Any, act: Any, stats: list[StatisticBase], ctx: Context, units: list[tuple[int, int]],
               memory_budget: Any, keep: Callable[[int, int, dict, int], None]) -> dict[str, Any]:
    """Every unit on the current Dask client, written by ``keep`` as each finishes; the plan, for attrs."""
    from distributed import as_completed, get_client
    from distributed.scheduler import KilledWorker

    from tgo_analysis.engine.units import unit_source

    client = get_client()
    workers = cluster_workers(client, memory_budget)
    if not units:
        return {"workers": workers.count, "threads_per_worker": workers.threads, "budget_per_worker": workers.budget}
    offer_resources(client, memory_budget)
    view, chunk = token_view(ds, act)
    ds_future = client.scatter(LazySlab(ds)) if any(s.unit_setup for s in stats) else None
    run = uuid.uuid4().hex[:8]
    submitted, splits = {}, {}
    for ci, li in units:
        source = unit_source(ds, act, ci, li, stats)
        bounds = np.concatenate([[0], np.cumsum(source.activations.array.chunks[0])]).astype(int)
        split = plan_split(stats, dataclasses.replace(ctx, source=source), workers, len(units), bounds, chunk)
        tokens_source = source if view is None else dataclasses.replace(source, activations=LazySlab(view[ci, li]))
        unit = submit_unit(client, ds_future, source, tokens_source, stats, ctx, ci, li, split, run)
        submitted[unit.result.key] = unit
        splits[(ci, li)] = split
    for future in as_completed([u.result for u in submitted.values()]):
        unit = submitted.pop(future.key)
        try:
            arrays = future.result()
        except KilledWorker as exc:
                raise TgoError(f"unit (checkpoint {unit.ci}, layer {unit.li}) killed its workers repeatedly "
                               f"({exc}); a worker ran out of memory: lower --memory-budget or raise the workers' "
                               "--memory-limit") from None
        keep(unit.ci, unit.li, arrays, 1)
        future.release()
    first = next(iter(splits.values()))
    return {"workers": workers.count, "threads_per_worker": workers.threads, "budget_per_worker": workers.budget,
            "token_chunk": chunk, "unit_split": first.record(),
            "read_amplification": max(s.read_amplification for s in splits.values())}
