"""One (checkpoint, layer) unit of an analysis: its source, its context, its budgeted reduction.

``unit_task`` is what runs per unit, in this process (threads) or as one task on a Dask
worker (where the default budget is a fraction of that worker's memory limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.budget import parse_budget, plan_unit
from tgo_analysis.engine.graph import Plan, one_blas_thread, reduce_unit
from tgo_analysis.statistics.base import Context, StatisticBase
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


def unit_context(ds: xr.Dataset, ctx: Context, stats: Sequence[StatisticBase], ci: int, li: int,
                 source: UnitSource) -> Context:
    """The analysis context for this unit: its source, and the ``prepare_unit`` hooks' parameters.

    The hooks run with one BLAS thread, as the fold does: their fits (semi-NMF) iterate small
    matrix products, which threads do not speed up and which a loaded machine slows 12x when
    BLAS threads spin (measured: 0.58 s vs 0.05 s per semi-NMF iteration at 1024 x 128, load 18).
    """
    unit = dataclasses.replace(ctx, source=source)
    params = dict(ctx.params)
    with one_blas_thread():
        for stat in stats:
            if stat.unit_setup:
                params[stat.name] = stat.prepare_unit(ds, ci, li, dataclasses.replace(unit, params=params))
    return dataclasses.replace(unit, params=params)


def unit_plan(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, budget: Any,
              threads: int | None = None) -> Plan:
    return plan_unit(stats, ctx, parse_budget(budget), source.block_rows(), threads)


def unit_task(source: UnitSource, stats: Sequence[StatisticBase], ctx: Context, budget: Any,
              threads: int | None = None,
              on_pass: Callable[[int, int], None] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The unit's result arrays and the number of passes made over its blocks."""
    plan = unit_plan(source, stats, ctx, budget, threads)
    return reduce_unit(source, stats, ctx, plan, on_pass), len(plan.passes)
