"""Results grow along `checkpoint`: a results store analysed at N checkpoints, re-analysed after
one more is ingested, equals a fresh analysis of all N+1, variable by variable and number for number.

The metrics include statistics over several checkpoints whose values depend on the others:
CKA to the reference checkpoint (the last one, which moves when one is added), updates to the
next checkpoint (the old last one gains a partner) and the alpha clusters (at the last
checkpoint). Both the CLI (`tgo analyze` into the same `--out`) and the Python `analyze` path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.support import ingest_kwargs, run_cli, save_checkpoints
from tgo_analysis.analyze import analyze
from tgo_analysis.results.store import open_results
from tgo_store import ingest
from tgo_store.store.open import open_store

METRICS = "alpha,mean_norm,alpha_cluster,cka_checkpoints,updates"
FIT = (2, 6)  # the tiny ViT has 16 features


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[list[str], dict[int, str]]:
    """The checkpoints, and a store of the first n of them for n = 1..4 (each ingested once)."""
    root = tmp_path_factory.mktemp("grow")
    ckpts = save_checkpoints(root / "ckpt", [0, 10, 20, 30])
    built: dict[int, str] = {}
    for n in (1, 2, 3, 4):
        path = str(root / f"s{n}.zarr")
        if n > 1:
            shutil.copytree(built[n - 1], path)
        ingest(path, **ingest_kwargs(ckpts[:n]))
        built[n] = path
    return ckpts, built


@pytest.fixture(scope="module")
def fresh(stores) -> dict[tuple[int, str], xr.Dataset]:
    """Fresh in-memory analyses (n checkpoints, metrics), computed once each when first asked for."""

    class Fresh(dict):
        def __missing__(self, key: tuple[int, str]) -> xr.Dataset:
            n, metrics = key
            self[key] = analyze(open_store(stores[1][n]), metrics, fit_range=FIT, progress=False)
            return self[key]

    return Fresh()


def assert_same(grown_path: str, fresh: xr.Dataset) -> None:
    """Every variable and coordinate of the fresh analysis, in the grown store, read as consolidated."""
    grown = xr.open_zarr(grown_path, zarr_format=3, consolidated=True).load()
    assert sorted(grown.data_vars) == sorted(fresh.data_vars)
    assert grown.sizes == fresh.sizes
    for name in [*fresh.data_vars, *fresh.coords]:
        np.testing.assert_array_equal(grown[name].values, fresh[name].values, err_msg=name)


@pytest.mark.parametrize(("before", "metrics"), [(1, METRICS), pytest.param(3, METRICS, marks=pytest.mark.slow),
                                                 pytest.param(1, "all", marks=pytest.mark.slow)])
def test_the_cli_grows_results_by_one_checkpoint(stores, fresh, tmp_path, capsys, before, metrics) -> None:
    ckpts, built = stores
    store, out = str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")
    shutil.copytree(built[before], store)
    args = ["analyze", store, "--out", out, "--metrics", metrics, "--fit-range", f"{FIT[0]}:{FIT[1]}", "--quiet"]
    first = run_cli(args, capsys)
    assert first.returncode == 0, first.stderr
    ingest(store, **ingest_kwargs(ckpts[:before + 1]))
    second = run_cli(args, capsys)
    assert second.returncode == 0, second.stderr
    summary = open_results(out).attrs["analysis_summary"]
    assert summary["units_reused"] == before * 3  # 3 layers per checkpoint kept
    assert_same(out, fresh[before + 1, metrics])


@pytest.mark.parametrize("before", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_python_analyze_grows_results_by_one_checkpoint(stores, fresh, tmp_path, before) -> None:
    ckpts, built = stores
    store, out = str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")
    shutil.copytree(built[before], store)
    analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    ingest(store, **ingest_kwargs(ckpts[:before + 1]))
    result = analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    assert result.attrs["analysis_summary"]["units_reused"] == before * 3
    assert_same(out, fresh[before + 1, METRICS])
    for name in fresh[before + 1, METRICS].data_vars:  # what analyze() returns is the grown store too
        np.testing.assert_array_equal(result[name].values, fresh[before + 1, METRICS][name].values, err_msg=name)


def test_a_growth_cut_short_after_the_resize_is_finished_by_the_re_run(stores, fresh, tmp_path, monkeypatch) -> None:
    """Arrays resized, consolidated metadata still at N (the state a kill leaves, or an older tgo's
    failed growth, which also lacked the arrays that need two checkpoints): the re-run grows on."""
    import tgo_analysis.results.store as results_store

    ckpts, built = stores
    store, out = str(tmp_path / "s.zarr"), str(tmp_path / "r.zarr")
    shutil.copytree(built[1], store)
    analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    ingest(store, **ingest_kwargs(ckpts[:2]))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("zarr.consolidate_metadata", killed)
    with pytest.raises(KeyboardInterrupt):
        analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    monkeypatch.undo()
    assert results_store.done_units(out)  # the first run's units are still recorded
    for name in ("cka_checkpoints", "update_norm"):  # as an older tgo left it: arrays of two checkpoints never made
        shutil.rmtree(Path(out) / name)
    analyze(open_store(store), METRICS, out=out, fit_range=FIT, progress=False)
    assert_same(out, fresh[2, METRICS])
