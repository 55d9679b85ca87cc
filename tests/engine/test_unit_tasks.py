"""The threaded unit loop (``engine.units.unit_tasks``): each unit's graph makes the next unit's context
once its blocks are folded, the results are those of one unit at a time, and a failing next context
stops the analysis only after every earlier unit was handed over."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from tgo_analysis.engine import graph
from tgo_analysis.engine.graph import Plan, reduce_unit, unit_context, unit_graph
from tgo_analysis.engine.units import unit_source, unit_tasks
from tgo_analysis.statistics import statistic
from tgo_analysis.statistics.base import Context
from tgo_store.errors import TgoError
from tgo_store.store import schema as S

SHAPE = (2, 2, 24, 4, 5)  # checkpoint, layer, sample, token, feature
BUDGET = 64 << 20


@dataclasses.dataclass(frozen=True)
class _Fitted(type(statistic("mean_norm"))):
    """mean_norm with a unit setup that records the unit it was fitted for (and refuses ``broken``)."""

    name: str = "fitted"
    unit_setup: bool = True
    broken: tuple[int, int] | None = None

    def fit_rows(self, ctx: Context) -> np.ndarray:
        return np.arange(3)

    def prepare_unit(self, fit, ctx: Context):
        if ctx.unit == self.broken:
            raise TgoError(f"unit {ctx.unit} cannot be fitted")
        return {"unit": ctx.unit, "fit": float(np.asarray(fit.x, np.float64).sum())}

    def aggregate(self, partial, ctx: Context):
        params = ctx.params[self.name]
        assert params["unit"] == ctx.unit  # the context of this unit, not the one made beside it
        return super().aggregate(partial, ctx)


def _store() -> tuple[xr.Dataset, xr.DataArray]:
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, x)}).chunk({S.SAMPLE: 8})
    return ds, ds[S.ACTIVATIONS]


def _ctx(stat) -> Context:
    return Context(*SHAPE[2:], n_rank=SHAPE[-1], metrics=stat.metrics, n_checkpoints=SHAPE[0], n_layers=SHAPE[1],
                   memory_budget=BUDGET)


UNITS = [(c, layer) for c in range(SHAPE[0]) for layer in range(SHAPE[1])]


def test_each_unit_equals_its_own_reduction_in_order() -> None:
    ds, act = _store()
    stat = _Fitted()
    got = list(unit_tasks(ds, act, [stat], _ctx(stat), UNITS, BUDGET))
    assert [(ci, li) for ci, li, _, _ in got] == UNITS
    for ci, li, arrays, passes in got:
        source = unit_source(ds, act, ci, li, [stat])
        alone = reduce_unit(source, [stat], unit_context(_ctx(stat), [stat], ci, li, source),
                            Plan(((0, SHAPE[3]),), threads=2))
        assert passes == 1 and all(np.array_equal(arrays[k], alone[k], equal_nan=True) for k in alone)


def test_the_next_context_waits_for_the_folds_only() -> None:
    ds, act = _store()
    stat = _Fitted()
    source = unit_source(ds, act, 0, 0, [stat])
    prepared = unit_context(_ctx(stat), [stat], 0, 0, source)
    made = []
    g = unit_graph(source, [stat], prepared.ctx, Plan(((0, SHAPE[3]),), threads=2), fits=prepared.fits,
                   then=lambda: made.append(1) or "next")
    tasks = dict(g.dask)
    then = next(k for k in tasks if k[1] == "then")
    assert {d[1] for d in tasks[then].dependencies} <= {"fold", "combine"}  # never an aggregate or a finish
    arrays, following = graph.compute_local(g, 2)
    assert following == "next" and made == [1] and set(arrays) >= {"mean_norm"}


def test_a_failing_next_context_comes_after_the_units_before_it() -> None:
    ds, act = _store()
    stat = _Fitted(broken=(1, 0))
    seen = []
    with pytest.raises(TgoError, match=r"unit \(1, 0\) cannot be fitted"):
        for ci, li, _, _ in unit_tasks(ds, act, [stat], _ctx(stat), UNITS, BUDGET):
            seen.append((ci, li))
    assert seen == UNITS[:2]  # the unit whose graph made the failing context was handed over first
