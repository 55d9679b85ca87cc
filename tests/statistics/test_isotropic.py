"""SPEC 8 finite-sample baselines: a white-noise store reads metric / <metric>_isotropic within 5 % of 1."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tgo_analysis import names as N
from tgo_analysis.kernels.isotropic import isotropic_metrics, wishart_eigenvalues
from tgo_store.errors import TgoError

D, T = 64, 32
ISO = N.ISOTROPIC_METRICS


def white_noise(n: int, seed: int = 0, mask: np.ndarray | None = None) -> xr.Dataset:
    x = np.random.default_rng(seed).standard_normal((1, 1, n, T, D)).astype(np.float32)
    coords = {} if mask is None else {"attention_mask": (("sample", "token"), mask)}
    ds = xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x)}, coords=coords)
    return ds.chunk({"sample": 100})


@pytest.mark.parametrize("n", [40, 400])
def test_white_noise_reads_its_isotropic_baseline(n) -> None:
    """Per token (averaged over T tokens of independent white noise) and pooled (n·T points)."""
    res = tgo_analysis.analyze(white_noise(n), ",".join(ISO) + ",pooled", progress=False)
    assert (res.n_samples.values == n).all() and res.n_samples_pooled.values[0, 0] == n * T
    for m in ISO:
        ratio = float(res[m].mean() / res[N.isotropic(m)].mean())
        assert abs(ratio - 1) < 0.05, (m, ratio)
        pooled = float(res[N.pooled(m)].values[0, 0] / res[N.isotropic(N.pooled(m))].values[0, 0])
        assert abs(pooled - 1) < 0.05, (N.pooled(m), pooled)
    # the baseline is far from what the population (I_D) has: n alone makes the spectrum decay
    assert res[N.isotropic(N.EFFECTIVE_RANK)].values.max() < (0.6 if n == 40 else 0.95) * D
    assert res.attrs["isotropic_draws"] >= 8 and res.attrs["isotropic_seed"] == 0


def test_the_laguerre_draws_have_the_law_of_sampled_covariance_spectra() -> None:
    """Mean eigenvalue profile of the tridiagonal draws against Gram spectra of sampled Gaussian matrices."""
    rng = np.random.default_rng(5)
    for n, d in ((30, 50), (200, 20)):
        drawn = wishart_eigenvalues(n, d, 400, rng).mean(axis=0)
        x = rng.standard_normal((400, n, d))
        singular = np.linalg.svd(x - x.mean(axis=1, keepdims=True), compute_uv=False)[:, :min(n - 1, d)]
        sampled = (singular**2 / (n - 1)).mean(axis=0)
        np.testing.assert_allclose(drawn, sampled, rtol=0.03)


def test_padded_tokens_get_the_baseline_of_their_own_n_and_reruns_are_identical() -> None:
    n = 120
    lengths = np.random.default_rng(1).integers(20, T + 1, n)
    mask = np.arange(T)[None, :] < lengths[:, None]
    ds = white_noise(n, 2, mask)
    res = tgo_analysis.analyze(ds, "effective_rank,alpha", progress=False)
    counts = mask.sum(axis=0)
    np.testing.assert_array_equal(res.n_samples.values[0, 0], counts)
    for t in (0, T - 1):
        assert res.effective_rank_isotropic.values[0, 0, t] == isotropic_metrics(int(counts[t]), D)[N.EFFECTIVE_RANK]
    assert res.effective_rank_isotropic.values[0, 0, 0] > res.effective_rank_isotropic.values[0, 0, T - 1]
    isotropic_metrics.cache_clear()
    again = tgo_analysis.analyze(ds, "effective_rank,alpha", progress=False)
    np.testing.assert_array_equal(again.alpha_isotropic.values, res.alpha_isotropic.values)


def test_selection_brings_the_baselines_with_their_metric_and_by_name() -> None:
    ds = white_noise(40)
    res = tgo_analysis.analyze(ds, "alpha", progress=False)
    assert {"alpha_isotropic", "noise_floor", "resolved_rank", "n_samples"} <= set(res.data_vars)
    assert "effective_rank_isotropic" not in res.data_vars and "effective_rank" not in res.data_vars
    alone = tgo_analysis.analyze(ds, "top1_share_isotropic", progress=False)
    assert "top1_share_isotropic" in alone.data_vars and "top1_share" not in alone.data_vars
    np.testing.assert_array_equal(alone.top1_share_isotropic.values,
                                  tgo_analysis.analyze(ds, "top1_share", progress=False).top1_share_isotropic.values)
    floor = tgo_analysis.analyze(ds, "noise_floor", progress=False)
    assert {"noise_floor", "resolved_rank", "n_samples"} <= set(floor.data_vars)
    off = tgo_analysis.analyze(ds, "alpha", progress=False, isotropic_draws=0)
    assert "alpha_isotropic" not in off.data_vars and "isotropic_draws" not in off.attrs
    with pytest.raises(TgoError, match="--isotropic-draws 4 is below 8") as info:
        tgo_analysis.analyze(ds, "alpha", progress=False, isotropic_draws=4)
    assert "\n" not in str(info.value)
    for name in ("noise_floor_pooled", "alpha_pooled_isotropic", "n_samples_pooled", "noise_floor_all",
                 "resolved_rank_all"):
        assert name in tgo_analysis.analyze(ds, name, progress=False).data_vars
