"""The Dask engine against an in-memory float64 numpy oracle, schedulers, resume, bad input."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from tgo_analysis import analyze
from tgo_analysis.kernels.twonn import subsample_indices
from tgo_store.errors import TgoError

FIT = (2, 20)
RTOL = 1e-6


def oracle(x: np.ndarray) -> dict[str, float]:
    """Float64 in-memory reference for one (sample, feature) matrix, written independently."""
    x = x.astype(np.float64)
    lam = np.clip(np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1], 0, None)
    if lam[0] == 0:
        return {"effective_rank": np.nan}
    nz = lam[lam > lam[0] * x.shape[1] * np.finfo(float).eps]
    ranks = np.arange(FIT[0], min(FIT[1], nz.size - 10) + 1)
    design = np.c_[-np.log(ranks), np.ones(ranks.size)]
    w = np.diag(1 / ranks)
    coef = np.linalg.solve(design.T @ w @ design, design.T @ w @ np.log(lam[ranks - 1]))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = (u @ u.T)
    return {"eigenvalues": lam, "alpha": coef[0], "effective_rank": np.exp(scipy.stats.entropy(nz)),
            "participation_ratio": nz.sum() ** 2 / (nz**2).sum(), "stable_rank": nz.sum() / nz[0],
            "spectral_flatness": scipy.stats.gmean(nz) / nz.mean(), "top1_share": nz[0] / nz.sum(),
            "spectral_entropy": scipy.stats.entropy(nz) / np.log(nz.size),
            "cosine_anisotropy": (cos.sum() - np.trace(cos)) / (len(x) * (len(x) - 1))}


@pytest.fixture(scope="module")
def threaded(plain_store, tmp_path_factory):
    url, _ = plain_store
    out = str(tmp_path_factory.mktemp("res") / "metrics.zarr")
    return analyze(xr.open_zarr(url), "all", out=out, fit_range=FIT, id_samples=150, progress=False), out


def test_every_metric_matches_the_in_memory_oracle(plain_store, threaded) -> None:
    _, data = plain_store
    res, _ = threaded
    for c in range(data.shape[0]):
        for layer in range(data.shape[1]):
            for tok in range(data.shape[3]):
                ref = oracle(data[c, layer, :, tok])
                got = res.isel(checkpoint=c, layer=layer, token=tok)
                if np.isnan(ref["effective_rank"]):
                    assert np.isnan(got.effective_rank) and int(got.metric_reason) == 1
                    continue
                for name, value in ref.items():
                    if name == "eigenvalues":
                        np.testing.assert_allclose(got[name].values[: value.size], value, rtol=1e-8, atol=1e-12)
                    else:
                        np.testing.assert_allclose(float(got[name]), value, rtol=RTOL, err_msg=name)


def test_correlation_all_tokens_and_intrinsic_dimension(plain_store, threaded) -> None:
    from skdim.id import TwoNN

    _, data = plain_store
    res, _ = threaded
    x = data[1, 2].astype(np.float64)  # (n, t, d)
    flat_tokens = x.transpose(1, 0, 2).reshape(x.shape[1], -1)
    np.testing.assert_allclose(res.token_correlation.isel(checkpoint=1, layer=2).values, np.corrcoef(flat_tokens),
                               rtol=1e-9, atol=1e-12)
    corr = np.corrcoef(flat_tokens)
    np.testing.assert_allclose(float(res.mean_token_correlation[1, 2]), corr[np.tril_indices(5, -1)].mean(), rtol=1e-9)
    per_sample = x.reshape(x.shape[0], -1)
    exact = np.linalg.svd(per_sample - per_sample.mean(0), compute_uv=False) ** 2 / (len(x) - 1)
    np.testing.assert_allclose(res.eigenvalues_all[1, 2].values[:100], exact[:100], rtol=1e-8)
    np.testing.assert_allclose(float(res.stable_rank_all[1, 2]), exact.sum() / exact[0], rtol=1e-8)
    subset = per_sample[subsample_indices(len(per_sample), 150, 0)]
    np.testing.assert_allclose(float(res.intrinsic_dimension[1, 2]), TwoNN().fit(subset).dimension_, rtol=1e-6)
    assert res.alpha_cluster.dims == ("token",)
    assert set(res.alpha_cluster.values) <= {-1, 0, 1, 2, 3}


def test_results_schema_and_provenance(threaded) -> None:
    _res, out = threaded
    reopened = xr.open_zarr(out)
    for name, dims in {"eigenvalues": ("checkpoint", "layer", "token", "rank"), "alpha": ("checkpoint", "layer", "token"),
                       "token_correlation": ("checkpoint", "layer", "token", "token_other"),
                       "mean_token_correlation": ("checkpoint", "layer"), "intrinsic_dimension": ("checkpoint", "layer"),
                       "alpha_all": ("checkpoint", "layer"), "alpha_cluster": ("token",)}.items():
        assert reopened[name].dims == dims, name
    for key in ("alpha_fit_range", "scheduler", "package_versions", "nonzero_threshold", "all_tokens_method"):
        assert key in reopened.attrs, key
    assert list(reopened.attrs["alpha_fit_range"]) == list(FIT)
    assert reopened.attrs["tgo_schema"] == 1  # an integer, as an activation store's


def test_requested_metrics_only(plain_store) -> None:
    url, _ = plain_store
    res = analyze(xr.open_zarr(url), "alpha,effective_rank", fit_range=FIT, progress=False)
    assert {"alpha", "alpha_r2", "effective_rank"} <= set(res.data_vars)
    assert not {"token_correlation", "intrinsic_dimension", "stable_rank", "eigenvalues"} & set(res.data_vars)


def test_local_cluster_gives_the_same_numbers(plain_store, threaded) -> None:
    url, _ = plain_store
    res, _ = threaded
    dist = analyze(xr.open_zarr(url), "alpha,effective_rank,token_correlation", fit_range=FIT, workers=2,
                   memory_limit="1GB", progress=False)
    for name in ("alpha", "effective_rank", "token_correlation"):
        np.testing.assert_allclose(dist[name].values, res[name].values, rtol=1e-12, equal_nan=True)


def test_the_device_path_gives_the_same_numbers_and_refuses_a_missing_gpu(plain_store, threaded) -> None:
    """The CUDA path (torch, one streaming task per layer) run on torch's CPU device."""
    import torch

    url, _ = plain_store
    res, _ = threaded
    spectral = "eigenvalues,alpha,effective_rank,stable_rank,participation_ratio,spectral_flatness,top1_share"
    dev = analyze(xr.open_zarr(url), spectral, fit_range=FIT, device="torch:cpu", progress=False)
    assert dev.attrs["device"] == "torch:cpu"
    for name in spectral.split(","):
        want = res[name].isel(rank=slice(0, dev.sizes["rank"])) if name == "eigenvalues" else res[name]
        np.testing.assert_allclose(dev[name].values, want.values, rtol=1e-9, atol=1e-12, equal_nan=True)
    if not torch.cuda.is_available():
        with pytest.raises(TgoError, match="no CUDA device"):
            analyze(xr.open_zarr(url), "alpha", fit_range=FIT, device="cuda", progress=False)
    with pytest.raises(TgoError, match="unknown --device"):
        analyze(xr.open_zarr(url), "alpha", fit_range=FIT, device="tpu", progress=False)


def test_device_path_splits_tokens_into_groups_that_fit_the_memory_budget(plain_store) -> None:
    """The device backend goes through the engine's budgeted passes: one pass or three, same spectra."""
    import dask.array as da

    from tgo_analysis.engine.blocks import LazySlab, UnitSource
    from tgo_analysis.engine.device import device_backend
    from tgo_analysis.engine.graph import Plan, reduce_unit
    from tgo_analysis.kernels.moments import chunk_moments, covariance
    from tgo_analysis.statistics import statistic
    from tgo_analysis.statistics.base import Context

    _, data = plain_store
    x = data[1, 2]
    n, t, d = x.shape
    stat = statistic("token_spectra")
    ctx = Context(n, t, d, n_rank=d, metrics=("eigenvalues",), backend=device_backend("torch:cpu"))
    whole = reduce_unit(UnitSource(LazySlab(da.from_array(x, chunks=(50, -1, -1)))), [stat], ctx, Plan(((0, t),), 1))
    grouped = reduce_unit(UnitSource(LazySlab(da.from_array(x, chunks=(37, -1, -1)))), [stat], ctx,
                          Plan(((0, 2), (2, 4), (4, t)), 2))  # 3 passes over token groups for 5 tokens
    cov = covariance(chunk_moments(x))
    ref = np.clip(np.sort(np.linalg.eigvalsh(cov), axis=-1)[:, ::-1], 0, None)
    for got in (whole, grouped):
        np.testing.assert_allclose(got["eigenvalues"], ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got["eigenvalues"].sum(axis=1), np.trace(cov, axis1=1, axis2=2), rtol=1e-9)


def test_interrupted_analysis_resumes_with_written_layers(plain_store, tmp_path, monkeypatch) -> None:
    engine = importlib.import_module("tgo_analysis.analyze")  # the package re-exports the function of that name
    from tgo_analysis.results.store import done_units

    url, _ = plain_store
    out = str(tmp_path / "partial.zarr")
    calls = {"n": 0}
    original = engine.write_unit

    def die_after_two(*args):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(*args)

    monkeypatch.setattr(engine, "write_unit", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        analyze(xr.open_zarr(url), "alpha", out=out, fit_range=FIT, progress=False)
    assert len(done_units(out)) == 2
    monkeypatch.setattr(engine, "write_unit", original)
    graphs = []
    original_units = engine.unit_tasks
    monkeypatch.setattr(engine, "unit_tasks",
                        lambda ds, act, stats, ctx, units, *a: graphs.extend(units) or original_units(ds, act, stats,
                                                                                                    ctx, units, *a))
    res = analyze(xr.open_zarr(url), "alpha", out=out, fit_range=FIT, progress=False)
    assert len(graphs) == 6 - 2  # 2 checkpoints x 3 layers, 2 reused
    full = analyze(xr.open_zarr(url), "alpha", fit_range=FIT, progress=False)
    np.testing.assert_allclose(res.alpha.values, full.alpha.values, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(("metrics", "kwargs", "message"), [
    ("nonsense", {}, "unknown metric 'nonsense'"),
    ("alpha", {"fit_range": (40, 100)}, "beyond the spectrum"),
    ("alpha", {"scheduler": "tcp://127.0.0.1:1"}, "cannot reach the Dask scheduler"),
])
def test_bad_input_is_refused(plain_store, metrics, kwargs, message) -> None:
    url, _ = plain_store
    with pytest.raises(TgoError, match=message):
        analyze(xr.open_zarr(url), metrics, progress=False, **{"fit_range": FIT, **kwargs})


def test_dataset_without_activations_or_wrong_dims(tmp_path) -> None:
    with pytest.raises(TgoError, match="no 'activations'"):
        analyze(xr.Dataset({"x": ("a", np.zeros(3))}), progress=False)
    bad = xr.Dataset({"activations": (("layer", "sample", "token", "feature"), np.zeros((1, 4, 2, 3)))})
    with pytest.raises(TgoError, match="expected"):
        analyze(bad, progress=False)


def test_cli_refuses_existing_output_and_reports_one_line(plain_store, threaded, tmp_path) -> None:
    url, _ = plain_store
    _, out = threaded
    done = subprocess.run([sys.executable, "-m", "tgo_app.cli", "analyze", url, "--out", out, "--metrics", "alpha"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--overwrite" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_in_memory_dataset_gives_the_numbers_of_its_store(plain_store) -> None:
    """``analyze`` takes a numpy-backed xarray Dataset as it is (a notebook's data), not only a store."""
    url, _ = plain_store
    stored = analyze(xr.open_zarr(url), "alpha", fit_range=FIT, progress=False)
    in_memory = analyze(xr.open_zarr(url).load(), "alpha", fit_range=FIT, progress=False)
    assert "alpha" in stored
    xr.testing.assert_allclose(stored.compute(), in_memory.compute(), rtol=1e-12)


def test_alpha_clusters_of_an_analysis_of_earlier_checkpoints_only(plain_store) -> None:
    """analyze(checkpoints=[0]) of a longer store clusters checkpoint 0 (the last with any alpha), not the
    empty last checkpoint (whose all-NaN trajectories once reached k-means as a (tokens, 0) array)."""
    from tgo_analysis.kernels.clustering import cluster_trajectories

    url, _ = plain_store
    res = analyze(xr.open_zarr(url), "alpha,alpha_cluster", checkpoints=[0], fit_range=FIT, progress=False)
    whole = analyze(xr.open_zarr(url).isel(checkpoint=[0]), "alpha,alpha_cluster", fit_range=FIT, progress=False)
    assert res.sizes["checkpoint"] > 1 and res.alpha_cluster.attrs["checkpoint_index"] == 0
    np.testing.assert_array_equal(res.alpha_cluster.values, whole.alpha_cluster.values)
    assert (res.alpha_cluster.values >= 0).any()
    assert (cluster_trajectories(np.full((5, 3), np.nan), 2) == -1).all()  # nothing resolved: no cluster
