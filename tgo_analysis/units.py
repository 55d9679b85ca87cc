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

from tgo_analysis import names as N
from tgo_analysis.budget import parse_budget, plan_unit
from tgo_analysis.reductions.all_tokens import AllTokensParams
from tgo_analysis.reductions.base import Context, Statistic
from tgo_analysis.reductions.blocks import LazySlab, UnitSource
from tgo_analysis.reductions.engine import Plan, reduce_unit
from tgo_analysis.reductions.token_spectra import TOKEN_SPECTRA
from tgo_store import schema as S


def unit_source(ds: xr.Dataset, act: xr.DataArray, ci: int, li: int, stats: Sequence[Statistic]) -> UnitSource:
    """The unit's activations, its per-(sample, token) coords and, when asked for, gradients."""
    extras = {}
    for name in S.POSITION_COORDS:
        if name in ds.coords and ds[name].dims == (S.SAMPLE, S.TOKEN):
            extras[name] = LazySlab(_lazy(ds[name]))
    if any(getattr(s, "needs_gradients", False) for s in stats) and S.GRADIENTS in ds.data_vars:
        extras["gradients"] = LazySlab(_lazy(ds[S.GRADIENTS])[ci, li])
    return UnitSource(LazySlab(act.data[ci, li]), extras)


def _lazy(da: xr.DataArray) -> Any:
    import dask.array

    return da.data if isinstance(da.data, dask.array.Array) else dask.array.from_array(np.asarray(da.values))


def unit_context(ds: xr.Dataset, ctx: Context, stats: Sequence[Statistic], ci: int, li: int,
                 source: UnitSource) -> Context:
    """The analysis context with this unit's parameters (``prepare_unit`` hooks, lazy slab)."""
    params = dict(ctx.params)
    if isinstance(params.get(N.ALL_TOKENS), AllTokensParams):
        params[N.ALL_TOKENS] = dataclasses.replace(params[N.ALL_TOKENS], slab=source.activations)
    if ctx.device != "cpu":
        params[TOKEN_SPECTRA] = (source.activations, ctx.device)
    for stat in stats:
        hook = getattr(stat, "prepare_unit", None)
        if hook is not None:
            params[stat.name] = hook(ds, ci, li, dataclasses.replace(ctx, params=params))
    return dataclasses.replace(ctx, params=params)


def unit_plan(source: UnitSource, stats: Sequence[Statistic], ctx: Context, budget: Any,
              threads: int | None = None) -> Plan:
    return plan_unit(stats, ctx, parse_budget(budget), source.block_rows(), threads)


def unit_task(source: UnitSource, stats: Sequence[Statistic], ctx: Context, budget: Any,
              threads: int | None = None,
              on_pass: Callable[[int, int], None] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """The unit's result arrays and the number of passes made over its blocks."""
    plan = unit_plan(source, stats, ctx, budget, threads)
    return reduce_unit(source, stats, ctx, plan, on_pass), len(plan.passes)
