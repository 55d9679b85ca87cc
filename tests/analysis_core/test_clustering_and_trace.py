"""Alpha-trajectory clusters, the exact trace for truncated spectra, zero-variance correlation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tgo_analysis.kernels.clustering import clusters_on_grid
from tgo_analysis.kernels.correlation import mean_lower_triangle, token_correlation, token_gram_sums
from tgo_analysis.kernels.metrics import (
    REASON_ZERO_VARIANCE,
    spectral_metrics,
    truncated_spectrum_metrics,
)
from tgo_analysis.kernels.moments import chunk_moments, covariance
from tgo_analysis.kernels.spectra import covariance_eigenvalues, exact_trace
from tgo_analysis.statistics.clusters import cluster_alpha_trajectories
from tgo_store.errors import TgoError


def test_clusters_recover_planted_groups_ordered_by_mean_alpha() -> None:
    rng = np.random.default_rng(0)
    layers, per_group = 6, 8
    base = np.array([0.5, 1.0, 2.0])  # group g has alpha ≈ base[g] with its own layer trend
    trend = np.stack([np.linspace(0, 1, layers), np.linspace(1, 0, layers), np.ones(layers)])
    traj = np.concatenate(
        [
            base[g] + trend[g] * 0.3 + 0.01 * rng.standard_normal((per_group, layers))
            for g in (2, 0, 1)
        ]
    )
    traj[3, 2] = np.nan
    alpha = xr.DataArray(
        traj.T, dims=("layer", "token"), coords={"token": np.arange(traj.shape[0])}
    )
    labels = cluster_alpha_trajectories(alpha, 3, seed=0).values
    assert labels[3] == -1
    expected = np.repeat([2, 0, 1], per_group)
    keep = np.arange(labels.size) != 3
    np.testing.assert_array_equal(labels[keep], expected[keep])
    again = cluster_alpha_trajectories(alpha, 3, seed=0).values
    np.testing.assert_array_equal(labels, again)


def test_a_layer_no_token_resolves_is_left_out_not_voiding_every_trajectory() -> None:
    """A float16 layer 0 below the noise floor (SPEC 8) has alpha NaN for every token: the
    clusters come from the other layers, the same as without that layer."""
    rng = np.random.default_rng(1)
    traj = np.concatenate([g + 0.05 * rng.standard_normal((6, 5)) for g in (0.5, 2.0)])
    with_nan_layer = np.concatenate([np.full((traj.shape[0], 1), np.nan), traj], axis=1)

    def labels(values: np.ndarray) -> np.ndarray:
        alpha = xr.DataArray(values.T, dims=("layer", "token"), coords={"token": np.arange(values.shape[0])})
        return cluster_alpha_trajectories(alpha, 2, seed=0).values

    np.testing.assert_array_equal(labels(with_nan_layer), labels(traj))
    np.testing.assert_array_equal(labels(traj), np.repeat([0, 1], 6))


def test_umap_missing_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    alpha = xr.DataArray(
        np.random.default_rng(1).random((3, 6)),
        dims=("layer", "token"),
        coords={"token": np.arange(6)},
    )
    with pytest.raises(TgoError, match="tgo\\[umap\\]"):
        cluster_alpha_trajectories(alpha, 2, use_umap=True)


def test_clusters_on_grid_places_patch_tokens_and_skips_prefix() -> None:
    labels = np.array([9, 0, 1, 2, 3])
    rows = np.array([-1, 0, 0, 1, 1])
    cols = np.array([-1, 0, 1, 0, 1])
    np.testing.assert_array_equal(clusters_on_grid(labels, rows, cols), [[0, 1], [2, 3]])


def test_truncated_metrics_with_exact_trace_equal_full_spectrum_metrics() -> None:
    x = np.random.default_rng(2).standard_normal((300, 2, 150)) * np.arange(1, 151) ** -0.6 + 3.0
    m = chunk_moments(x)
    eigs = covariance_eigenvalues(covariance(m))
    full = spectral_metrics(eigs, 150)
    trace = np.array([exact_trace(np.trace(m.comoment[t]), m.count) for t in range(2)])
    np.testing.assert_allclose(trace, eigs.sum(axis=-1), rtol=1e-10)
    truncated = truncated_spectrum_metrics(eigs[:, :120], trace, 150)
    for key in ("alpha", "stable_rank", "top1_share"):
        np.testing.assert_allclose(truncated[key], full[key], rtol=1e-9)
    zero = truncated_spectrum_metrics(np.zeros((1, 120)), 0.0, 150)
    assert np.isnan(zero["top1_share"][0]) and zero["reason"][0] == REASON_ZERO_VARIANCE


def test_zero_variance_token_gives_nan_correlation_and_is_left_out_of_the_mean() -> None:
    x = np.random.default_rng(3).standard_normal((50, 4, 6))
    x[:, 2] = 1.5  # constant token, like CLS at layer 0
    corr = token_correlation(token_gram_sums(x))
    assert np.isnan(corr[2]).all() and np.isnan(corr[:, 2]).all()
    keep = [0, 1, 3]
    ref = np.corrcoef(x[:, keep].transpose(1, 0, 2).reshape(3, -1))
    np.testing.assert_allclose(corr[np.ix_(keep, keep)], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        mean_lower_triangle(corr), ref[np.tril_indices(3, -1)].mean(), rtol=1e-12
    )
