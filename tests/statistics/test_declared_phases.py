"""A plug-in statistic's declared phases run through the engine with no edit of tgo: a second
read (``reads_twice``/``second_pass``), a fit-sample step (``fit_rows``/``prepare_unit``) and a
derived result (``Derived``), each against float64 numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from tests.analysis.conftest import write_plain_store
from tgo_analysis import analyze
from tgo_analysis.statistics import STATISTICS, register_statistic
from tgo_analysis.statistics.base import Derived, Result, StatisticBase, Variable


@dataclass(frozen=True)
class CentredSquares:
    """The second read's fold: Σ (x - mean)² per token, the mean from the first read."""

    name: str
    mean: np.ndarray

    def fold(self, acc, block, ctx):
        part = ((np.asarray(block.x, np.float64) - self.mean) ** 2).sum(axis=(0, 2))
        return part if acc is None else acc + part

    def combine(self, a, b):
        return a + b


def _twice_norm(result, settings):
    return result["phase_var"].max(dim="token") * 0 + float(settings["n_clusters"])


@dataclass(frozen=True)
class Phases(StatisticBase):
    name: str = "phases"
    metrics: tuple = ("phase_var", "phase_fit")
    token_split: bool = False
    unit_setup: bool = True
    derived: tuple = (Derived("phase_derived", "phase_var", _twice_norm),)

    def variables(self, ctx):
        return (Variable("phase_var", ("token",), (ctx.n_tokens,)), Variable("phase_fit", (), ()))

    def fit_rows(self, ctx):
        return np.array([1, 4, 7])

    def prepare_unit(self, fit, ctx):
        return float(np.asarray(fit.x, np.float64).sum()), tuple(int(s) for s in fit.samples)

    def chunk(self, block, ctx):
        x = np.asarray(block.x, np.float64)
        return x.shape[0], x.sum(axis=0)

    def combine(self, a, b):
        return a[0] + b[0], a[1] + b[1]

    def reads_twice(self, ctx):
        return True

    def second_pass(self, partial, ctx):
        return CentredSquares(self.name, partial[1] / partial[0])

    def aggregate_twice(self, partial, second, ctx):
        fit_sum, rows = ctx.params[self.name]
        assert rows == (1, 4, 7)
        return Result({"phase_var": second / (partial[0] * partial[1].shape[-1] - 1), "phase_fit": np.asarray(fit_sum)})

    def partial_bytes(self, ctx, n_tokens):
        return n_tokens * ctx.n_features * 8


def test_second_read_fit_rows_and_derived_result_through_the_engine(tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((1, 2, 30, 3, 4)).astype(np.float32)
    url = write_plain_store(tmp_path / "s.zarr", x, chunk=7)
    register_statistic(Phases())
    try:
        res = analyze(xr.open_zarr(url), "phase_derived", n_clusters=3, progress=False)
    finally:
        STATISTICS.unregister("phases")
    assert "phase_var" in res  # selected by the derived result that requires it
    for layer in range(2):
        unit = x[0, layer].astype(np.float64)
        centred = unit - unit.mean(axis=0)
        want = (centred**2).sum(axis=(0, 2)) / (unit.shape[0] * unit.shape[2] - 1)
        np.testing.assert_allclose(res["phase_var"].values[0, layer], want, rtol=1e-12)
        np.testing.assert_allclose(res["phase_fit"].values[0, layer], unit[[1, 4, 7]].sum(), rtol=1e-12)
    assert (res["phase_derived"].values == 3.0).all()
