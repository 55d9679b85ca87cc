"""SPEC 8 storage noise floor: rank-4 float16 tokens give alpha NaN, float16 and float32 agree where resolved."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tgo_analysis
from tgo_analysis.kernels.metrics import METRIC_REASONS, REASON_FEW_RESOLVED, spectral_metrics
from tgo_analysis.kernels.noise_floor import noise_floor, unit_roundoff

D = 128


def dataset(x: np.ndarray, chunk: int = 500) -> xr.Dataset:
    """A store written with plain xarray: x (sample, token, feature) as one checkpoint and layer."""
    return xr.Dataset({"activations": (("checkpoint", "layer", "sample", "token", "feature"), x[None, None])}).chunk(
        {"sample": chunk})


def power_law_tokens(exponents: tuple[float, ...], n: int = 3000, seed: int = 0) -> np.ndarray:
    """(n, T, D) float64: token t has covariance eigenvalues i^-p_t in a random basis, plus an offset."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(exponents), D))
    for t, p in enumerate(exponents):
        q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        out[:, t] = (rng.standard_normal((n, D)) * np.arange(1, D + 1.0) ** (-p / 2)) @ q.T + 0.3
    return out


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_unit_roundoff_is_half_the_machine_epsilon_of_the_stored_dtype(dtype) -> None:
    assert unit_roundoff(np.dtype(dtype)) == np.finfo(dtype).eps / 2
    assert unit_roundoff(dtype) == np.finfo(dtype).eps / 2


def test_bfloat16_roundoff() -> None:
    assert unit_roundoff("bfloat16") == unit_roundoff("torch.bfloat16") == 2**-8  # SPEC 8 (8 significand bits)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert unit_roundoff(np.dtype(ml_dtypes.bfloat16)) == float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps) / 2 == 2**-8


def test_noise_floor_bounds_the_measured_rounding_variance_per_direction() -> None:
    """The floor is u² E‖x‖²/(3D): the rounding error actually added, per direction, lies below it and
    within a factor 4 of it (uniform error on ±u·2^e with 2^e in (|x|/2, |x|])."""
    x = np.random.default_rng(1).standard_normal((4000, 64)) * np.linspace(0.1, 10, 64)
    error = x.astype(np.float16).astype(np.float64) - x
    measured = (error**2).sum(axis=1).mean() / 64
    floor = noise_floor(2.0**-11, (x**2).sum(axis=1).mean(), 64)
    assert floor / 4 < measured < floor


def test_rank_four_tokens_in_float16_give_alpha_nan_with_the_reason() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 3, 4)) @ rng.standard_normal((4, D)) + rng.standard_normal(D)
    res = tgo_analysis.analyze(dataset(x.astype(np.float16), 200), "alpha", progress=False)
    assert np.isnan(res.alpha.values).all()
    assert (res.metric_reason.values == REASON_FEW_RESOLVED).all()
    assert METRIC_REASONS[REASON_FEW_RESOLVED].startswith("too few resolved ranks")
    assert res.attrs["reason_codes"][str(REASON_FEW_RESOLVED)].startswith("too few resolved ranks")
    assert (res.resolved_rank.values <= 5).all()
    assert res.attrs["stored_roundoff"] == 2.0**-11
    # the float16 rounding fills ranks 5..128 above "nonzero": the SPEC 3 rule alone fits alpha on it
    stored = x.astype(np.float16).astype(np.float64)
    eigs = np.linalg.eigvalsh(np.cov(stored[:, 0].T))[::-1]
    assert np.isfinite(spectral_metrics(eigs, D)["alpha"])
    floor = noise_floor(2.0**-11, (stored[:, 0] ** 2).sum(axis=1).mean(), D)
    np.testing.assert_allclose(res.noise_floor.values[0, 0, 0], floor, rtol=1e-9)


def test_float16_and_float32_alpha_agree_where_both_are_resolved() -> None:
    """Shallow tokens resolve the whole default range in both; steep ones only the top ranks in
    float16, where float32 fitted over the same resolved ranks agrees, and the SPEC 3 rule alone does not."""
    exponents = (2.0, 3.0, 4.0, 5.0)
    x = power_law_tokens(exponents)
    half = tgo_analysis.analyze(dataset(x.astype(np.float16)), "eigenvalues,alpha", progress=False)
    single = tgo_analysis.analyze(dataset(x.astype(np.float32)), "alpha", progress=False)
    a16, a32 = half.alpha.values[0, 0], single.alpha.values[0, 0]
    resolved = half.resolved_rank.values[0, 0]
    assert (single.resolved_rank.values == D).all() and resolved[0] == D and resolved[3] < 40
    assert np.isfinite(a16).all() and np.isfinite(a32).all()
    assert abs(a16[0] - a32[0]) < 0.02 and abs(a16[1] - a32[1]) < 0.02
    for t in (2, 3):
        upper = min(100, int(resolved[t]) - 10)
        same = tgo_analysis.analyze(dataset(x[:, t:t + 1].astype(np.float32)), "alpha", fit_range=(11, upper),
                                    progress=False)
        assert abs(a16[t] - same.alpha.values[0, 0, 0]) < 0.02, (t, a16[t], same.alpha.values)
    old = spectral_metrics(half.eigenvalues.values[0, 0, 3], D)["alpha"]  # no floor: fitted on rounding
    assert abs(old - a32[3]) > 0.5


def test_earlier_metrics_are_unchanged_on_float32_full_rank_data() -> None:
    x = power_law_tokens((1.0, 2.0), n=400, seed=3).astype(np.float32)
    names = ("alpha", "alpha_r2", "effective_rank", "stable_rank", "participation_ratio", "spectral_entropy",
             "spectral_flatness", "top1_share")
    res = tgo_analysis.analyze(dataset(x, 150), ",".join(names), progress=False)
    assert (res.resolved_rank.values == D).all()
    for t in range(2):
        cov = np.cov(x[:, t].astype(np.float64).T)
        eigs = np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)
        reference = spectral_metrics(eigs, D)  # the SPEC 3 rules, no floor
        for name in names:
            np.testing.assert_allclose(res[name].values[0, 0, t], reference[name], rtol=1e-9, err_msg=name)


def test_pooled_and_all_token_spectra_carry_their_floor() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((300, 4, 4)) @ rng.standard_normal((4, D))).astype(np.float16)
    res = tgo_analysis.analyze(dataset(x, 100), "pooled,all_tokens", progress=False)
    stored = x.astype(np.float64)
    points = stored.reshape(-1, D)
    floor = noise_floor(2.0**-11, (points**2).sum(axis=1).mean(), D)
    np.testing.assert_allclose(res.noise_floor_pooled.values[0, 0], floor, rtol=1e-9)
    assert res.n_samples_pooled.values[0, 0] == 1200 and res.resolved_rank_pooled.values[0, 0] <= 16
    flat = stored.reshape(300, -1)
    np.testing.assert_allclose(res.noise_floor_all.values[0, 0],
                               noise_floor(2.0**-11, (flat**2).sum(axis=1).mean(), 4 * D), rtol=1e-9)
    assert res.resolved_rank_all.values[0, 0] <= 16
    assert np.isnan(res.alpha_pooled.values).all() and np.isnan(res.alpha_all.values).all()


def test_the_truncated_all_token_spectrum_has_the_same_floor() -> None:
    x = np.random.default_rng(5).standard_normal((200, 3, D)).astype(np.float16) + np.float16(2)
    res = tgo_analysis.analyze(dataset(x, 50), "noise_floor_all", progress=False, all_tokens="randomized",
                               svd_rank=20)
    flat = x.astype(np.float64).reshape(200, -1)
    np.testing.assert_allclose(res.noise_floor_all.values[0, 0],
                               noise_floor(2.0**-11, (flat**2).sum(axis=1).mean(), 3 * D), rtol=1e-9)
    assert res.resolved_rank_all.values[0, 0] == 20  # within the top k
