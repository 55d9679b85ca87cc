"""The device backend reads each sample block once per pass, as the CPU path does (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tests.analysis.conftest import planted_activations, write_plain_store
from tgo_analysis import analyze
from tgo_analysis.engine import blocks

SPECTRAL = "eigenvalues,alpha,effective_rank"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return write_plain_store(tmp_path_factory.mktemp("reads") / "store.zarr", planted_activations())


def _counted_analysis(monkeypatch, url: str, **kwargs) -> tuple[xr.Dataset, int]:
    calls = {"n": 0}
    read = blocks.read_block

    def counting(array, i):
        calls["n"] += 1
        return read(array, i)

    monkeypatch.setattr(blocks, "read_block", counting)
    res = analyze(xr.open_zarr(url), SPECTRAL, fit_range=(2, 20), progress=False, **kwargs)
    return res, calls["n"]


def _budget_for_passes(ds: xr.Dataset, passes: int) -> int:
    """The smallest budget whose plan makes at most ``passes`` passes (found on the planner itself)."""
    from tgo_analysis.engine.budget import plan_unit
    from tgo_analysis.statistics import statistic
    from tgo_analysis.statistics.base import Context
    from tgo_store.errors import TgoError

    _, _, n, t, d = ds.activations.shape
    ctx = Context(n, t, d, d, ds.activations.dtype.itemsize, ("eigenvalues", "alpha", "effective_rank"))
    rows = max(ds.activations.data.chunks[2])
    lo, hi = 1, 1 << 34
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            ok = len(plan_unit([statistic("token_spectra")], ctx, mid, rows).passes) <= passes
        except TgoError:
            ok = False
        lo, hi = (lo, mid) if ok else (mid + 1, hi)
    return lo


@pytest.mark.parametrize("device", ["cpu", "torch:cpu"])
def test_each_block_is_read_once_per_pass(monkeypatch, store, device) -> None:
    ds = xr.open_zarr(store)
    n_checkpoints, n_layers = ds.sizes["checkpoint"], ds.sizes["layer"]
    n_blocks = len(ds.activations.data.chunks[2])
    one, reads_one = _counted_analysis(monkeypatch, store, device=device)
    assert one.attrs["token_passes"] == 1
    assert reads_one == n_checkpoints * n_layers * n_blocks
    budget = _budget_for_passes(ds, 3)
    many, reads_many = _counted_analysis(monkeypatch, store, device=device, memory_budget=budget)
    passes = many.attrs["token_passes"]
    assert passes > 1
    assert reads_many == passes * n_checkpoints * n_layers * n_blocks
    np.testing.assert_allclose(many.eigenvalues.values, one.eigenvalues.values, rtol=1e-9, atol=1e-12,
                               equal_nan=True)
