"""The one graph builder: a unit's reduction as one dask graph, which dask's schedulers run.

A (checkpoint, layer) unit, or a multi-slab unit read in lockstep, becomes one graph, as
``dask.array.reduction`` builds one (``_tree_reduce``):

- **read** tasks, one per sample chunk and pass, each returning that chunk's ``Block``;
- **fold** tasks per sample range x token range: a chain over the range's chunks, folding
  each into the running partial (``StatisticBase.fold``, in place);
- a **combine** tree over the sample ranges, ``split_every`` partials per task (``combine``);
- **aggregate** tasks (one per token range, or a ``join_tokens`` chain first) and one
  **assemble** task that stitches the unit's result arrays.

What tgo keeps from its own design: the passes over token groups are chosen before anything
is read (``engine.budget``, from the statistics' declared partial sizes), and each read waits
for the folds of the chunk two before it in its sample range, so at most the chunk being
folded and the next one are in memory, whatever the scheduler's order. Per-token statistics
fold every chunk into one partial per token sub-range (the sub-ranges are the parallel work);
statistics that see every token fold in one sample range per thread when no per-token
statistic shares the pass, merged by the combine tree (pooled spectra on 2 threads). A pass
starts when the previous one is aggregated, so only one pass's partials are alive.

The graph is an ordinary ``Delayed``: ``compute_unit`` runs it on the threaded scheduler with
the planned threads (one BLAS thread each); on a ``distributed`` client it runs unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_analysis.engine import blocks
from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.statistics.base import Block, Context, StatisticBase, Variable

SPLIT_EVERY = 8  # partials merged per combine task, as dask's reductions default to a few
_BLAS: Any = None


def one_blas_thread() -> Any:
    """A context with one BLAS thread: the graph runs one task per core itself.

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
    """Token ranges, one pass over the blocks each; threads (parallel fold chains); rows per fed block."""

    passes: tuple[tuple[int, int], ...]
    threads: int = 1
    max_rows: int | None = None


@dataclass(frozen=True)
class Pass:
    """One read of every chunk: the context it folds with, per-token statistics over ``ranges``
    (one partial per token sub-range), and statistics that see every token (``whole``)."""

    ctx: Context
    split: tuple[StatisticBase, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    whole: tuple[StatisticBase, ...] = ()
    folds: tuple[Any, ...] = ()  # a second read: the folds of ``whole`` (refs to ``second_pass`` results)
    needed: Any = True  # a second read: a ref to whether any fold is not None (else nothing is read)


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) cut into at most ``parts`` contiguous non-empty ranges of near-equal size."""
    cuts = np.linspace(lo, hi, min(parts, hi - lo) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def sample_lanes(step: Pass, n_chunks: int, threads: int) -> list[tuple[int, int]]:
    """The sample ranges (chunk index ranges) a pass folds in parallel: one when per-token statistics
    share it (their token sub-ranges are the parallel work, and all chains read in one order), else one
    per thread."""
    return [(0, n_chunks)] if step.split or threads <= 1 else split_range(0, n_chunks, threads)


def empty_results(variables: Sequence[Variable]) -> dict[str, np.ndarray]:
    """Result arrays filled with their fill values."""
    return {v.name: np.full(v.shape, v.fill, dtype=v.dtype) for v in variables}


def put_results(out: dict[str, np.ndarray], arrays: dict[str, np.ndarray], tokens: tuple[int, int] | None) -> None:
    """Copy ``arrays`` into ``out``, at token range ``tokens`` (all of them for None); a result whose
    shape differs from its template (a multi-slab unit's leading layer axis) replaces it."""
    for name, value in arrays.items():
        if name not in out:
            continue
        if tokens is None and np.shape(value) != out[name].shape:
            out[name] = np.full(np.shape(value), np.nan)
        target = out[name] if tokens is None else out[name][tokens[0]:tokens[1]]
        target[...] = value


# --- task functions (module level: picklable for a distributed client) ---------------------------------


def _read(source: UnitSource, chunk: int, on_pass: Callable[[], None] | None, needed: bool, *after: Any) -> Block | None:
    """Sample chunk ``chunk`` (``after``: tasks that must finish first, bounding the reads in flight);
    None when a second read turned out not to be ``needed``."""
    if not needed:
        return None
    if on_pass is not None:
        on_pass()
    return blocks.read_chunk(source, chunk)


def _fold(acc: dict | None, block: Block | None, stats: Sequence[Any], ctx: Context,
          tokens: tuple[int, int] | None, max_rows: int | None) -> dict:
    """``acc`` (partials by statistic name) with ``block`` folded in, ``max_rows`` samples at a time
    (a None statistic, a second read this unit does not need, folds nothing)."""
    acc = {} if acc is None else acc
    if block is None:
        return acc
    step = max_rows or block.x.shape[0]
    for lo in range(0, block.x.shape[0], step):
        piece = block.rows(lo, min(block.x.shape[0], lo + step))
        piece = piece if tokens is None else piece.token_range(*tokens)
        for s in stats:
            if s is not None:
                acc[s.name] = s.fold(acc.get(s.name), piece, ctx)
    return acc


def _combine(stats: Sequence[Any], first: dict, *rest: dict) -> dict:
    """Partials of consecutive sample ranges merged in order (into the first, which nothing else reads)."""
    for part in rest:
        for s in stats:
            if s is not None and s.name in part:
                first[s.name] = part[s.name] if s.name not in first else s.combine(first[s.name], part[s.name])
    return first


def _second_pass(stat: StatisticBase, partials: dict, ctx: Context) -> Any:
    return stat.second_pass(partials[stat.name], ctx)


def _next_pass(stat: StatisticBase, fold: Any, partials: dict, ctx: Context) -> Any:
    """The fold of a statistic's next read from its last one (None once a read was not needed)."""
    return None if fold is None else stat.next_pass(fold, partials.get(stat.name), ctx)


def _named(stat: StatisticBase, value: Any) -> dict:
    return {stat.name: value}


def _latest(*parts: dict) -> dict:
    """Partials by statistic name, a later read's replacing an earlier one's."""
    return {name: value for part in parts for name, value in part.items()}


def _any(*folds: Any) -> bool:
    return any(f is not None for f in folds)


def _aggregate_twice(stat: StatisticBase, partials: dict, seconds: dict, ctx: Context) -> dict[str, np.ndarray]:
    return dict(stat.aggregate_twice(partials[stat.name], seconds.get(stat.name), ctx).arrays)


def _aggregate(stat: StatisticBase, partials: dict, ctx: Context) -> dict[str, np.ndarray]:
    return dict(stat.aggregate(partials[stat.name], ctx).arrays)


def _aggregate_part(stat: StatisticBase, partials: dict, ctx: Context, part: int) -> Any:
    return stat.aggregate_part(partials[stat.name], ctx, part)


def _aggregate_parts(stat: StatisticBase, partials: dict, ctx: Context, *parts: Any) -> dict[str, np.ndarray]:
    return dict(stat.aggregate(stat.with_parts(partials[stat.name], parts, ctx), ctx).arrays)


def _join(stat: StatisticBase, acc: Any, partials: dict) -> Any:
    return stat.join_tokens(acc, partials[stat.name])


def _join_group(stat: StatisticBase, acc: Any, partials: dict, ctx: Context) -> Any:
    return stat.join_groups(acc, partials[stat.name], ctx)


def _aggregate_value(stat: StatisticBase, value: Any, ctx: Context) -> dict[str, np.ndarray]:
    return dict(stat.aggregate(value, ctx).arrays)


def _assemble(variables: Sequence[Variable], placed: Sequence[tuple[int, int] | None],
              *arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = empty_results(variables)
    for tokens, value in zip(placed, arrays, strict=True):
        put_results(out, value, tokens)
    return out


def _after(*_: Any) -> None:
    return None


def _finish(stat: StatisticBase, fits: Mapping[str, Block | None], ctx: Context, part: int) -> Any:
    return stat.finish_unit(fits.get(stat.name), ctx, part)


def _finish_join(stat: StatisticBase, ctx: Context, *parts: Any) -> Any:
    return stat.finish_join(parts, ctx)


def _finished(ctx: Context, names: Sequence[str], *values: Any) -> Context:
    """``ctx`` with the ``finish_unit`` values of ``names`` as their parameters (what ``aggregate`` reads)."""
    return dataclasses.replace(ctx, params={**ctx.params, **dict(zip(names, values, strict=True))})


def _ctx_of(prepared: Prepared) -> Context:
    return prepared.ctx


def _fits_of(prepared: Prepared) -> Mapping[str, Block | None]:
    return prepared.fits


# --- the builder ---------------------------------------------------------------------------------------


class GraphBuilder:
    """Tasks of one unit's graph, keyed ``(kind, name, ...)`` under one unique name."""

    def __init__(self, label: str = "unit"):
        from dask._task_spec import Task

        self.name = f"tgo-{label}-{uuid.uuid4().hex[:8]}"
        self.graph: dict[Any, Any] = {}
        self.resources: dict[Any, dict[str, int]] = {}  # what a task claims of a worker (distributed)
        self.retries = 0
        self._task = Task

    def add(self, kind: str, index: tuple, fn: Callable, *args: Any, claims: dict[str, int] | None = None) -> Any:
        """Add a task; ``args`` that are keys of this graph (``ref``) are its dependencies; ``claims``
        the worker resources it holds while it runs (an annotation: the threaded scheduler ignores it)."""
        from dask._task_spec import List, TaskRef

        key = (self.name, kind, *index)
        args = tuple(List(*a) if isinstance(a, list) and any(isinstance(x, TaskRef) for x in a) else a for a in args)
        self.graph[key] = self._task(key, fn, *args)
        if claims:
            self.resources[key] = claims
        return key

    @staticmethod
    def ref(key: Any) -> Any:
        from dask._task_spec import TaskRef

        return TaskRef(key)

    def delayed(self, key: Any) -> Any:
        """The graph as a ``Delayed`` whose value is task ``key`` (every scheduler runs it)."""
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        annotations: dict[str, Any] = {"retries": self.retries} if self.retries else {}
        if self.resources:
            annotations["resources"] = self.resources.get
        layer = MaterializedLayer(self.graph, annotations=annotations or None)
        return Delayed(key, HighLevelGraph({self.name: layer}, {self.name: set()}), layer=self.name)


def fold_pass(g: GraphBuilder, source: UnitSource, step: Pass, index: int, threads: int, max_rows: int | None,
              after: Sequence[Any] = (), on_pass: Callable[[], None] | None = None) -> dict[tuple[str, Any], Any]:
    """Read and fold tasks of one pass and its combine trees: the key of each final partial dict,
    by (statistic name or "split", token sub-range or None)."""
    n_chunks = blocks.chunk_count(source)
    ref = g.ref  # ``source`` is already ``blocks.fed``: one chunk per sample block, every token
    lanes = sample_lanes(step, n_chunks, threads)
    chains: dict[tuple[str, Any], list[Any]] = {}  # (chain, lane) -> keys of partials per lane
    heads: dict[tuple[Any, int], Any] = {}
    folds_of: dict[int, list[Any]] = {}
    for lane, (a, b) in enumerate(lanes):
        for c in range(a, b):
            gate = list(after) if c == a else []
            if c - 2 >= a:
                gate += folds_of[c - 2]
            read = g.add("read", (index, c), _read, source, c, on_pass if c == 0 else None, step.needed,
                         *map(ref, gate))
            folds_of[c] = []
            for r in step.ranges if step.split else ():
                prev = heads.get((("split", r), lane))
                key = g.add("fold", (index, "split", r[0], r[1], c), _fold, None if prev is None else ref(prev),
                            ref(read), list(step.split), step.ctx, r, max_rows)
                heads[(("split", r), lane)] = key
                folds_of[c].append(key)
            for i, s in enumerate(step.whole):
                prev = heads.get(((s.name, None), lane))
                key = g.add("fold", (index, s.name, c), _fold, None if prev is None else ref(prev), ref(read),
                            [step.folds[i] if step.folds else s], step.ctx, None, max_rows)
                heads[((s.name, None), lane)] = key
                folds_of[c].append(key)
    for (chain, lane), key in heads.items():
        chains.setdefault(chain, [None] * len(lanes))[lane] = key
    finals: dict[tuple[str, Any], Any] = {}
    for chain, level in chains.items():
        stats = list(step.split) if chain[0] == "split" else \
            [step.folds[i] if step.folds else s for i, s in enumerate(step.whole) if s.name == chain[0]]
        finals[chain] = combine_tree(g, level, _combine, stats, (index, str(chain)))
    return finals


def combine_tree(g: GraphBuilder, level: Sequence[Any], fn: Callable, stats: Sequence[StatisticBase], index: tuple,
                 split_every: int = SPLIT_EVERY, claims: Callable[[int], dict[str, int]] | None = None) -> Any:
    """Partials merged ``split_every`` at a time, level by level, to one (dask's ``_tree_reduce``)."""
    level, depth = list(level), 0
    while len(level) > 1:
        depth += 1
        level = [g.add("combine", (*index, depth, i), fn, list(stats), *map(g.ref, level[i:i + split_every]),
                       claims=None if claims is None else claims(len(level[i:i + split_every])))
                 for i in range(0, len(level), split_every)]
    return level[0]


def aggregate_task(g: GraphBuilder, stat: StatisticBase, final: Any, ctx: Any, index: tuple, planned: Context) -> Any:
    """The key ("aggregate", *index) of ``stat``'s aggregate of the fold ``final`` (a key): one task, or its
    ``aggregate_parts`` tasks at once and the aggregate of their values (``planned``: the context that
    fixes their number)."""
    n_parts = stat.aggregate_parts(planned)
    if not n_parts:
        return g.add("aggregate", index, _aggregate, stat, g.ref(final), ctx)
    parts = [g.ref(g.add("aggregate-part", (*index, p), _aggregate_part, stat, g.ref(final), ctx, p))
             for p in range(n_parts)]
    return g.add("aggregate", index, _aggregate_parts, stat, g.ref(final), ctx, *parts)


def finish_context(g: GraphBuilder, stats: Sequence[StatisticBase], ctx: Any, fits: Any,
                   claims: dict[str, int] | None = None, planned: Context | None = None) -> Any:
    """The context ``aggregate`` reads (a ref): ``ctx`` with each ``unit_setup`` statistic's ``finish_join``
    of its ``finish_unit`` parts, each part a task beside the fold (``ctx``, ``fits``: values or refs;
    ``claims``: what each finish task holds of a worker; ``planned``: the analysis context that fixes the
    number of parts, when ``ctx`` is a ref); ``ctx`` when no statistic has one. The parts of a long
    finish (a bootstrap's refits) share the threads the fold leaves, not one of them."""
    late = [s for s in stats if s.unit_setup]
    if not late or fits is None:
        return ctx
    values = []
    for s in late:
        parts = [g.ref(g.add("finish", (s.name, p), _finish, s, fits, ctx, p, claims=claims))
                 for p in range(s.finish_parts(ctx if planned is None else planned))]
        values.append(g.ref(g.add("finish-join", (s.name,), _finish_join, s, ctx, *parts)))
    return g.ref(g.add("finished", (), _finished, ctx, [s.name for s in late], *values))


def second_read(g: GraphBuilder, source: UnitSource, firsts: Sequence[tuple[StatisticBase, Any]], ctx: Context,
                index: int, threads: int, max_rows: int | None, after: Sequence[Any] = (),
                late: Any = None) -> list[Any]:
    """The later reads of the statistics that declare them (``reads``): each turns its first partial
    into the fold of the second read (``second_pass``; None: not needed here, and when no statistic
    needs a read nothing is read), each later read's fold from the last (``next_pass``), then
    aggregates the first and the last (``aggregate_twice``, with ``late``: the ``finish_context`` of
    ``unit_setup`` statistics). Keys of their result arrays, in ``firsts`` order."""
    stats, late = [s for s, _ in firsts], ctx if late is None else late
    folds = {s.name: g.ref(g.add("second-pass", (s.name,), _second_pass, s, g.ref(key), ctx)) for s, key in firsts}
    lasts: dict[str, Any] = {}
    for read in range(2, max(s.reads(ctx) for s in stats) + 1):
        live = [s for s in stats if s.reads(ctx) >= read]
        if read > 2:
            folds.update({s.name: g.ref(g.add("next-pass", (read, s.name), _next_pass, s, folds[s.name],
                                              g.ref(lasts[s.name]), ctx)) for s in live})
        mine = tuple(folds[s.name] for s in live)
        needed = g.ref(g.add("read-needed", (read,), _any, *mine))
        finals = fold_pass(g, source, Pass(ctx, whole=tuple(live), folds=mine, needed=needed), index + read - 2,
                           threads, max_rows, after)
        lasts.update({s.name: finals[(s.name, None)] for s in live})
        after = [g.add("read-done", (read,), _after, *(g.ref(lasts[s.name]) for s in live))]
    return [g.add("aggregate", (index, s.name), _aggregate_twice, s, g.ref(key), g.ref(lasts[s.name]),
                  late if s.unit_setup else ctx) for s, key in firsts]


def unit_passes(stats: Sequence[StatisticBase], ctx: Context, plan: Plan) -> list[Pass]:
    """The passes of a per-unit plan: per-token statistics over each token group, cut in ``plan.threads``
    sub-ranges; statistics that see every token in the first pass."""
    split = tuple(s for s in stats if s.token_split)
    whole = tuple(s for s in stats if not s.token_split)
    return [Pass(ctx, split, tuple(split_range(lo, hi, plan.threads)) if split else (), whole if i == 0 else ())
            for i, (lo, hi) in enumerate(plan.passes)]


def unit_graph(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, plan: Plan,
               on_pass: Callable[[int, int], None] | None = None,
               fits: Mapping[str, Block | None] | None = None, then: Callable[[], Any] | None = None) -> Any:
    """One (checkpoint, layer) reduction as one graph (a ``Delayed`` of the unit's result arrays);
    ``fits``: the rows ``unit_context`` read, from which ``finish_unit`` tasks run beside the fold.
    ``then`` (the next unit's ``unit_context``): a task that starts once every block is folded, beside
    this unit's tail (its ``finish_unit`` and aggregates); the value is then (arrays, its value)."""
    g = GraphBuilder("unit")
    source = blocks.fed(source)
    passes = unit_passes(stats, ctx, plan)
    late = finish_context(g, stats, ctx, fits)

    def ctx_of(stat: StatisticBase) -> Any:  # what its aggregate reads
        return late if stat.unit_setup else ctx

    placed: list[tuple[int, int] | None] = []
    results: list[Any] = []
    joined: dict[str, Any] = {}
    twice: list[tuple[StatisticBase, Any]] = []  # statistics that read the unit twice, their first partials
    after: list[Any] = []
    folded: list[Any] = []  # every pass's final partials: ``then`` waits for them, not for the aggregates
    for index, step in enumerate(passes):
        tell = None if on_pass is None else _announce(on_pass, index, len(passes))
        finals = fold_pass(g, source, step, index, plan.threads, plan.max_rows, after, tell)
        folded += finals.values()
        done = []
        for r in step.ranges:
            for s in step.split:
                if s.joins_tokens:
                    prev = joined.get(s.name)
                    joined[s.name] = g.add("join", (index, s.name, r[0]), _join, s,
                                           None if prev is None else g.ref(prev), g.ref(finals[("split", r)]))
                    done.append(joined[s.name])
                else:
                    results.append(aggregate_task(g, s, finals[("split", r)], ctx_of(s), (index, s.name, r[0]), ctx))
                    placed.append(r)
                    done.append(results[-1])
        for s in step.whole:
            if s.reads_twice(step.ctx):  # aggregated after its second read
                twice.append((s, finals[(s.name, None)]))
                continue
            results.append(aggregate_task(g, s, finals[(s.name, None)], ctx_of(s), (index, s.name), ctx))
            placed.append(None)
            # a unit_setup aggregate waits for finish_unit; the next pass need not: its partial, budgeted
            # in every pass (``engine.budget``'s whole-token partials), is complete when folded
            done.append(finals[(s.name, None)] if s.unit_setup else results[-1])
        after = [g.add("pass-done", (index,), _after, *map(g.ref, done))]
    for name, key in joined.items():
        stat = next(s for s in stats if s.name == name)
        if stat.reads_twice(ctx):  # the joined token ranges are its first read
            twice.append((stat, g.add("joined", (name,), _named, stat, g.ref(key))))
            continue
        results.append(g.add("aggregate", ("joined", name), _aggregate_value, stat, g.ref(key), ctx_of(stat)))
        placed.append(None)
    if twice:
        results += second_read(g, source, twice, ctx, len(passes), plan.threads, plan.max_rows, after, late)
        placed += [None] * len(twice)
        folded += results[-len(twice):]  # their last reads end in these aggregates
    variables = [v for s in stats for v in s.variables(ctx)]
    arrays = g.add("assemble", (), _assemble, variables, placed, *map(g.ref, results))
    if then is None:
        return g.delayed(arrays)
    following = g.add("then", (), _then, then, *map(g.ref, folded))
    return g.delayed(g.add("unit-then", (), _pair, g.ref(arrays), g.ref(following)))


def _then(then: Callable[[], Any], *_: Any) -> Any:
    return then()


def _pair(first: Any, second: Any) -> tuple[Any, Any]:
    return first, second


def group_graph(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context,
                groups: dict[str, tuple], max_rows: int | None, fits: Mapping[str, Block | None] | None = None) -> Any:
    """A multi-slab unit as one graph: pass ``i`` folds each statistic with its ``i``-th group
    (``ctx.group``), ``join_groups`` folds each finished pass into the statistic's running value."""
    g = GraphBuilder("slabs")
    source = blocks.fed(source)
    n_passes = max(len(v) for v in groups.values())
    joined: dict[str, Any] = {}
    after: list[Any] = []
    for index in range(n_passes):
        active = tuple(s for s in stats if index < len(groups[s.name]))
        pass_ctx = dataclasses.replace(ctx, group={s.name: groups[s.name][index] for s in active})
        finals = fold_pass(g, source, Pass(pass_ctx, whole=active), index, 1, max_rows, after)
        for s in active:
            prev = joined.get(s.name)
            joined[s.name] = g.add("join", (index, s.name), _join_group, s, None if prev is None else g.ref(prev),
                                   g.ref(finals[(s.name, None)]), pass_ctx)
        after = [g.add("pass-done", (index,), _after, *(g.ref(joined[s.name]) for s in active))]
    late = finish_context(g, stats, ctx, fits)
    results = [g.add("aggregate", ("joined", s.name), _aggregate_value, s, g.ref(joined[s.name]),
                     late if s.unit_setup else ctx) for s in stats]
    variables = [v for s in stats for v in s.variables(ctx)]
    return g.delayed(g.add("assemble", (), _assemble, variables, [None] * len(results), *map(g.ref, results)))


def _announce(on_pass: Callable[[int, int], None], index: int, total: int) -> Callable[[], None]:
    def tell() -> None:
        on_pass(index, total)
    return tell


@dataclass(frozen=True)
class Prepared:
    """A unit's context after its ``prepare_unit`` hooks, and the rows each read (``fits``, by statistic
    name), which its ``finish_unit`` tasks take beside the fold."""

    ctx: Context
    fits: Mapping[str, Block | None]


def unit_context(ctx: Context, stats: Sequence[StatisticBase], ci: int, li: int, source: UnitSource) -> Prepared:
    """The analysis context for this unit: its source, and the ``prepare_unit`` hooks' parameters,
    each from the rows of the unit it asks for (``fit_rows``), read here (and kept for ``finish_unit``).

    The hooks run with one BLAS thread, as the fold does: their fits (semi-NMF) iterate small
    matrix products, which threads do not speed up and which a loaded machine slows 12x when
    BLAS threads spin (measured: 0.58 s vs 0.05 s per semi-NMF iteration at 1024 x 128, load 18).
    """
    unit = dataclasses.replace(ctx, unit=(ci, li))
    params = dict(ctx.params)
    fits: dict[str, Block | None] = {}
    with one_blas_thread():
        for stat in stats:
            if stat.unit_setup:
                here = dataclasses.replace(unit, params=params)
                rows = stat.fit_rows(here)
                fits[stat.name] = None if rows is None else blocks.read_rows(source, rows)
                params[stat.name] = stat.prepare_unit(fits[stat.name], here)
    return Prepared(dataclasses.replace(unit, params=params), fits)


def compute_local(graph: Any, threads: int) -> Any:
    """A graph's value on this process's threads (``threads`` at once, one BLAS thread each)."""
    import dask.threaded

    with one_blas_thread():
        return graph.compute(scheduler=dask.threaded.get, num_workers=max(1, threads))


def reduce_unit(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context | Prepared, plan: Plan,
                on_pass: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Every statistic's result arrays for one (checkpoint, layer), named as its variables (``ctx``: a
    ``Prepared`` unit for statistics with ``unit_setup``, whose ``finish_unit`` then runs beside the fold)."""
    fits = ctx.fits if isinstance(ctx, Prepared) else None
    ctx = ctx.ctx if isinstance(ctx, Prepared) else ctx
    return compute_local(unit_graph(source, stats, ctx, plan, on_pass, fits), plan.threads)


def fold_partials(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, plan: Plan,
                  ranges: Sequence[tuple[int, int]]) -> dict:
    """One read of ``source``'s blocks: un-aggregated partials keyed (statistic name, token range
    or None), token-split statistics over the given ``ranges`` (a cluster merges these)."""
    g = GraphBuilder("partials")
    split = tuple(s for s in stats if s.token_split)
    whole = tuple(s for s in stats if not s.token_split)
    step = Pass(ctx, split, tuple(ranges) if split else (), whole)
    finals = fold_pass(g, blocks.fed(source), step, 0, 1, plan.max_rows)
    keys = list(finals)
    values = compute_local(g.delayed(g.add("partials", (), _collect, *map(g.ref, finals.values()))), plan.threads)
    out: dict[tuple[str, Any], Any] = {}
    for (_, r), value in zip(keys, values, strict=True):
        out.update({(name, r): partial for name, partial in value.items()})
    return out


def _collect(*values: Any) -> list[Any]:
    return list(values)


def partial_results(partials: dict, stats: Sequence[StatisticBase], ctx: Context, ranges: Sequence[tuple[int, int]],
                    threads: int, out: dict[str, np.ndarray] | None = None,
                    seconds: dict | None = None) -> dict[str, np.ndarray]:
    """Result arrays from partials keyed as ``fold_partials`` makes them (into ``out`` when given);
    ``seconds``: the second read's partials of the statistics that declare one."""
    out = empty_results([v for s in stats for v in s.variables(ctx)]) if out is None else out
    joined: dict[str, Any] = {}
    for s in stats:
        if s.token_split and s.joins_tokens and s.reads_twice(ctx):
            put_results(out, _aggregate_twice(s, {s.name: first_partial(s, partials, ranges)}, seconds or {}, ctx),
                        None)
        elif s.token_split and s.joins_tokens:
            for r in ranges:
                joined[s.name] = s.join_tokens(joined.get(s.name), partials[(s.name, r)])
            put_results(out, _aggregate_value(s, joined.pop(s.name), ctx), None)
        elif s.token_split:
            for r in ranges:
                put_results(out, _aggregate_value(s, partials[(s.name, r)], ctx), r)
        elif s.reads_twice(ctx):
            put_results(out, _aggregate_twice(s, {s.name: partials[(s.name, None)]}, seconds or {}, ctx), None)
        else:
            put_results(out, _aggregate_value(s, partials[(s.name, None)], ctx), None)
    return out


# --- a unit cut across a cluster's workers (the cut: ``engine.budget.plan_split``) --------------------


def _no_client() -> Any:
    """Dask computations inside a task run on this worker, never back on the cluster."""
    import dask
    from dask.local import get_sync

    return dask.config.set(scheduler=get_sync)


def _prepare(stats: Sequence[StatisticBase], ctx: Context, source: UnitSource, ci: int, li: int) -> Prepared:
    """The unit's context with its ``prepare_unit`` parameters (semi-NMF fits), on a worker."""
    with _no_client():
        return unit_context(ctx, stats, ci, li, source)


def _token_fold(stats: Sequence[StatisticBase], ctx: Context, source: UnitSource, lo: int, hi: int, threads: int,
                max_rows: int | None) -> dict[str, np.ndarray]:
    """Per-token results for tokens [lo, hi) of every sample: one read of those tokens only."""
    with _no_client():
        out = reduce_unit(source.part(tokens=(lo, hi)), stats, ctx, Plan(((lo, hi),), threads, max_rows))
    return {name: value[lo:hi] for name, value in out.items()}


def _sample_fold(stats: Sequence[StatisticBase], ctx: Context, source: UnitSource, a: int, b: int,
                 ranges: Sequence[tuple[int, int]], threads: int, max_rows: int | None) -> dict:
    """Partials of samples [a, b) (every token), keyed as ``fold_partials`` makes them."""
    with _no_client():
        return fold_partials(source.part(samples=(a, b)), stats, ctx, Plan(((0, ctx.n_tokens),), threads, max_rows),
                             ranges)


def first_partial(stat: StatisticBase, partials: dict, ranges: Sequence[tuple[int, int]]) -> Any:
    """A statistic's partial of the whole first read, from partials keyed as ``fold_partials`` makes them
    (a statistic that joins token ranges: its ranges joined in order)."""
    if not (stat.token_split and stat.joins_tokens):
        return partials[(stat.name, None)]
    joined = None
    for r in ranges:
        joined = stat.join_tokens(joined, partials[(stat.name, r)])
    return joined


def _second_of(stat: StatisticBase, merged: dict, ranges: Sequence[tuple[int, int]], ctx: Context) -> Any:
    return stat.second_pass(first_partial(stat, merged, ranges), ctx)


def _sample_second(folds: Sequence[Any], needed: bool, ctx: Context, source: UnitSource, a: int, b: int,
                   max_rows: int | None) -> dict:
    """The second read of samples [a, b): the folds' partials by name (nothing read when not needed)."""
    live = tuple(f for f in folds if f is not None)
    if not needed or not live:
        return {}
    g = GraphBuilder("second")
    finals = fold_pass(g, blocks.fed(source.part(samples=(a, b))), Pass(ctx, whole=live, folds=live), 0, 1, max_rows)
    with _no_client():
        parts = compute_local(g.delayed(g.add("partials", (), _collect, *map(g.ref, finals.values()))), 1)
    return {name: value for part in parts for name, value in part.items()}


def _merge_second(folds: Sequence[Any], *parts: dict) -> dict:
    """Second-read partials merged in order, the first copied (a worker may still hold it)."""
    import copy

    return _combine(folds, copy.deepcopy(parts[0]), *parts[1:])


def _merge(stats: Sequence[StatisticBase], *parts: dict) -> dict:
    """Partials of consecutive sample ranges merged in order. The first is copied, never updated in
    place: a worker may still hold it for a retried or sibling task."""
    import copy

    by_name = {s.name: s for s in stats}
    merged = copy.deepcopy(parts[0])
    for part in parts[1:]:
        for key in merged:
            merged[key] = by_name[key[0]].combine(merged[key], part[key])
    return merged


def _assemble_cut(stats: Sequence[StatisticBase], ctx: Context, cut: Any, merged: dict | None, seconds: dict | None,
                  *tokens: dict) -> dict[str, np.ndarray]:
    """The unit's result arrays: token-range results stitched, merged partials aggregated."""
    out = empty_results([v for s in stats for v in s.variables(ctx)])
    for (lo, hi), arrays in zip(cut.token_tasks, tokens, strict=True):
        put_results(out, arrays, (lo, hi))
    if merged is not None:
        partial_results(merged, [s for s in stats if s.name in cut.merged], ctx, cut.ranges, cut.threads, out, seconds)
    return out


def cut_graph(source: UnitSource, tokens_source: UnitSource, stats: Sequence[StatisticBase], ctx: Context,
              cut: Any, memory: str, threads: str, unit: tuple[int, int] = (0, 0), retries: int = 0) -> Any:
    """One unit cut for a cluster, as one graph: its ``prepare_unit`` task, token-range folds (results),
    sample-range folds merged by a combine tree ``cut.split_every`` wide, and the assembly. Every task
    claims ``memory`` bytes and ``threads`` threads of its worker (resource annotations)."""
    g = GraphBuilder(f"c{unit[0]}-l{unit[1]}")
    g.retries = retries

    def claims(nbytes: int = 0, n_threads: int = 0) -> dict[str, int]:
        return {threads: n_threads or cut.threads, **({memory: nbytes} if nbytes else {})}

    unit_ctx: Any = ctx
    late: Any = ctx
    if any(s.unit_setup for s in stats):
        prepared = g.ref(g.add("prepare", (), _prepare, list(stats), unit_ctx, source, *unit, claims=claims(n_threads=1)))
        unit_ctx = g.ref(g.add("context", (), _ctx_of, prepared))
        late = finish_context(g, stats, unit_ctx, g.ref(g.add("fits", (), _fits_of, prepared)), claims(n_threads=1),
                              ctx)
    per_token = [s for s in stats if s.name in cut.per_token]
    token_ctx = late if any(s.unit_setup for s in per_token) else unit_ctx  # they aggregate in their task
    tokens = [g.add("tokens", (lo, hi), _token_fold, per_token, token_ctx, tokens_source, lo, hi, cut.threads,
                    cut.max_rows, claims=claims(cut.token_task_bytes)) for lo, hi in cut.token_tasks]
    merged = seconds = None
    if cut.sample_tasks:
        group = [s for s in stats if s.name in cut.merged]
        level = [g.add("samples", (a, b), _sample_fold, group, unit_ctx, source, a, b, cut.ranges, cut.threads,
                       cut.max_rows,
                       claims=claims(cut.sample_task_bytes)) for a, b in cut.sample_tasks]
        merged = g.ref(combine_tree(g, level, _merge, group, (), cut.split_every,
                                    lambda k: claims((k + 1) * cut.merge_bytes, 1)))
        twice = [s for s in group if s.reads_twice(ctx)]
        folds = {s.name: g.ref(g.add("second-pass", (s.name,), _second_of, s, merged, cut.ranges, unit_ctx))
                 for s in twice}
        reads: list[Any] = []  # each later read's merged partials
        for read in range(2, max((s.reads(ctx) for s in twice), default=1) + 1):  # later reads, cut as the first
            live = [s for s in twice if s.reads(ctx) >= read]
            if read > 2:
                folds.update({s.name: g.ref(g.add("next-pass", (read, s.name), _next_pass, s, folds[s.name], seconds,
                                                  unit_ctx)) for s in live})
            mine = [folds[s.name] for s in live]
            needed = g.ref(g.add("read-needed", (read,), _any, *mine))
            level = [g.add("second", (read, a, b), _sample_second, mine, needed, unit_ctx, source, a, b, cut.max_rows,
                           claims=claims(cut.sample_task_bytes, 1)) for a, b in cut.sample_tasks]
            seconds = g.ref(combine_tree(g, level, _merge_second, mine, ("second", read), cut.split_every,
                                         lambda k: claims((k + 1) * cut.merge_bytes, 1)))
            reads.append(seconds)
        if reads:  # each statistic's last read
            seconds = g.ref(g.add("last-reads", (), _latest, *reads))
    return g.delayed(g.add("assemble", (), _assemble_cut, list(stats), late, cut, merged, seconds,
                           *map(g.ref, tokens), claims=claims(cut.merge_bytes)))


def reduce_array(stat: StatisticBase, x: np.ndarray, ctx: Context | None = None, block_rows: int = 64,
                 plan: Plan | None = None) -> dict[str, np.ndarray]:
    """One statistic on an in-memory (N, T, D) array, through ``reduce_unit`` (for tests)."""
    import dask.array as da

    n, t, d = x.shape
    ctx = ctx or Context(n, t, d, n_rank=d, itemsize=x.dtype.itemsize, metrics=stat.metrics)
    source = UnitSource(LazySlab(da.from_array(x, chunks=(block_rows, t, d))))
    return reduce_unit(source, [stat], ctx, plan or Plan(((0, t),), threads=2))
