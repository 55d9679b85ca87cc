"""The units of an analysis: their sources, their contexts, their budgeted reductions.

A (checkpoint, layer) is a unit; ``unit_tasks`` plans each unit's passes (``engine.budget.plan_unit``)
and computes its graph (``engine.graph.unit_graph``) on this process's threads, with the next unit's
``unit_context`` in it.

Units over several (checkpoint, layer) slabs are read in lockstep over the same sample blocks.
A statistic with ``unit_kind = "checkpoint_layers"`` gets one unit per checkpoint (its layers,
in order); one with ``"layer_checkpoints"`` one unit per (checkpoint, layer) with the partner
checkpoints it names (the CKA reference, the next checkpoint). ``work_items`` lists them for an
analysis: an item is included when its anchor or one of its partners is among the checkpoints
asked for and every slab it reads is ready (a sweep analyses checkpoints as they arrive, so an
item waits for its partner and runs when that one is ingested). ``item_task`` plans its passes
(``engine.budget.plan_groups``) and computes its graph (``engine.graph.group_graph``). An item's
key names the slabs it read, so the done record of a resumed analysis matches only the same work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.budget import default_threads, plan_groups, plan_unit
from tgo_analysis.engine.graph import (
    Plan,
    Prepared,
    compute_local,
    group_graph,
    unit_context,
    unit_graph,
)
from tgo_analysis.statistics.base import (
    CHECKPOINT_LAYERS,
    LAYER_CHECKPOINTS,
    UNIT,
    Context,
    StatisticBase,
)
from tgo_store.store import schema as S


def unit_source(ds: xr.Dataset, act: xr.DataArray, ci: int, li: int,
                stats: Sequence[StatisticBase]) -> UnitSource:
    """The unit's activations, its per-(sample, token) coords and, when asked for, gradients."""
    extras = {}
    for name in S.POSITION_COORDS:
        if name in ds.coords and ds[name].dims == (S.SAMPLE, S.TOKEN):
            extras[name] = LazySlab(_lazy(ds[name]))
    if any(s.needs_gradients for s in stats) and S.GRADIENTS in ds.data_vars:
        extras["gradients"] = LazySlab(_lazy(ds[S.GRADIENTS])[ci, li])
    return UnitSource(LazySlab(act.data[ci, li]), extras)


def _lazy(da: xr.DataArray) -> Any:
    import dask.array

    return da.data if isinstance(da.data, dask.array.Array) else dask.array.from_array(np.asarray(da.values))


def unit_plan(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, budget: int,
              threads: int | None = None) -> Plan:
    """The unit's passes within ``budget`` bytes (``engine.budget.plan_unit``)."""
    return plan_unit(stats, ctx, budget, source.block_rows(), threads)


def unit_tasks(ds: xr.Dataset, act: xr.DataArray, stats: Sequence[StatisticBase], ctx: Context,
               units: Sequence[tuple[int, int]], budget: int,
               on_pass: Callable[[int, int], Callable[[int, int], None]] | None = None,
               ) -> Iterator[tuple[int, int, dict[str, np.ndarray], int]]:
    """(checkpoint, layer, result arrays, passes) of each unit in turn, on this process's threads.

    Each unit's graph also runs the next unit's ``unit_context`` (its ``prepare_unit`` fits) once its
    blocks are folded, beside its tail (``finish_unit``, aggregates), so a fit no longer leaves a
    core idle. A next context that fails is made again in its own turn, so the error comes after
    every earlier unit's results were yielded."""
    prepared: Prepared | None = None
    for i, (ci, li) in enumerate(units):
        source = unit_source(ds, act, ci, li, stats)
        if prepared is None:
            prepared = unit_context(ctx, stats, ci, li, source)
        plan = unit_plan(source, stats, prepared.ctx, budget)
        tell = None if on_pass is None else on_pass(ci, li)
        then = _next_context(ds, act, stats, ctx, *units[i + 1]) if i + 1 < len(units) else None
        value = compute_local(unit_graph(source, stats, prepared.ctx, plan, tell, prepared.fits, then), plan.threads)
        arrays, prepared = value if then is not None else (value, None)
        yield ci, li, arrays, len(plan.passes)


def _next_context(ds: xr.Dataset, act: xr.DataArray, stats: Sequence[StatisticBase], ctx: Context,
                  ci: int, li: int) -> Callable[[], Prepared | None]:
    def prepare() -> Prepared | None:
        try:
            return unit_context(ctx, stats, ci, li, unit_source(ds, act, ci, li, stats))
        except Exception:  # made again in the unit's own turn, where its error belongs
            return None
    return prepare


@dataclass(frozen=True)
class WorkItem:
    """One multi-slab unit: its kind, anchor, the slabs it reads (anchor first) and its statistics."""

    kind: str
    checkpoint: int
    layer: int | None  # None: every layer of the checkpoint (checkpoint_layers)
    slabs: tuple[tuple[int, int], ...]
    stats: tuple[StatisticBase, ...]

    @property
    def key(self) -> str:
        """The done record's name: kind, anchor and every slab read (a changed partner is new work)."""
        partners = "-".join(f"c{c}" for c in dict.fromkeys(c for c, _ in self.slabs))
        layer = "all" if self.layer is None else f"l{self.layer:06d}"
        stats = "+".join(s.name for s in self.stats)
        return f"{self.kind}/c{self.checkpoint:06d}_{layer}_{partners}_{stats}"

    def cells(self, arrays: dict[str, np.ndarray]) -> list[tuple[tuple[int, int], dict[str, np.ndarray]]]:
        """The (checkpoint, layer) result cells and their arrays (checkpoint_layers: one per layer)."""
        if self.layer is not None:
            return [((self.checkpoint, self.layer), arrays)]
        return [((self.checkpoint, li), {k: v[i] for k, v in arrays.items()}) for i, (_, li) in enumerate(self.slabs)]


def per_unit(stats: Iterable[StatisticBase]) -> list[StatisticBase]:
    """The statistics of ordinary (checkpoint, layer) units."""
    return [s for s in stats if s.unit_kind == UNIT]


def work_items(stats: Sequence[StatisticBase], ctx: Context, chosen: Iterable[int],
               ready: Iterable[int] | None = None) -> list[WorkItem]:
    """Every multi-slab unit of the analysis whose anchor or partner is in ``chosen`` and whose slabs are ready."""
    n_ckpt, n_layers = ctx.n_checkpoints, ctx.n_layers
    chosen, ready = set(chosen), set(range(n_ckpt)) if ready is None else set(ready)
    items: list[WorkItem] = []
    by_checkpoint = tuple(s for s in stats if s.unit_kind == CHECKPOINT_LAYERS)
    if by_checkpoint:
        items += [WorkItem(CHECKPOINT_LAYERS, ci, None, tuple((ci, li) for li in range(n_layers)), by_checkpoint)
                  for ci in sorted(chosen & ready)]
    by_layer = [s for s in stats if s.unit_kind == LAYER_CHECKPOINTS]
    for ci in range(n_ckpt) if by_layer else ():
        partners = {s.name: s.partners(ci, ctx) for s in by_layer}
        active = tuple(s for s in by_layer if partners[s.name])
        checkpoints = tuple(dict.fromkeys([ci, *(p for s in active for p in partners[s.name])]))
        if not active or not set(checkpoints) & chosen or not set(checkpoints) <= ready:
            continue
        items += [WorkItem(LAYER_CHECKPOINTS, ci, li, tuple((c, li) for c in checkpoints), active)
                  for li in range(n_layers)]
    return items


def item_source(ds: xr.Dataset, act: xr.DataArray, item: WorkItem) -> UnitSource:
    """The anchor slab with its per-(sample, token) coords, and the other slabs to read beside it."""
    ci, li = item.slabs[0]
    source = unit_source(ds, act, ci, li, item.stats)
    return dataclasses.replace(source, others=tuple(LazySlab(act.data[c, lo]) for c, lo in item.slabs[1:]))


def item_context(ctx: Context, item: WorkItem, source: UnitSource) -> Prepared:
    """The context of one item: its slabs, and its statistics' ``prepare_unit`` at the anchor."""
    ctx = dataclasses.replace(ctx, slabs=item.slabs)
    if item.layer is None:
        return Prepared(ctx, {})
    return unit_context(ctx, item.stats, item.checkpoint, item.layer, source)


def item_graph(source: UnitSource, stats: Sequence[StatisticBase], prepared: Prepared, budget: int,
               threads: int | None = None) -> tuple[Any, int]:
    """One item's graph (``engine.graph.group_graph``) within ``budget`` bytes, and its number of passes."""
    ctx, n_slabs = prepared.ctx, 1 + len(source.others)
    rows, groups = plan_groups(stats, ctx, budget, source.block_rows(), n_slabs, threads)
    graph = group_graph(source, stats, ctx, groups, rows if rows < source.block_rows() else None, prepared.fits)
    return graph, max(len(g) for g in groups.values())


def item_task(source: UnitSource, stats: Sequence[StatisticBase], prepared: Prepared, budget: int,
              threads: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """One item's result arrays and the number of passes made over its blocks, on this process's
    threads: one fold chain per statistic at once, the CPUs' BLAS threads shared among them."""
    import dask.threaded
    from threadpoolctl import threadpool_limits

    graph, n_passes = item_graph(source, stats, prepared, budget, threads)
    blas = max(1, (threads or default_threads()) // len(stats))
    with threadpool_limits(limits=blas, user_api="blas"):
        return graph.compute(scheduler=dask.threaded.get, num_workers=len(stats)), n_passes
