"""Every SPEC section 3 metric against an independent float64 reference."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.stats
import torch

from tests.support import llm_microscope_function
from tgo_analysis.kernels.correlation import (
    mean_lower_triangle,
    merge_gram_sums,
    token_correlation,
    token_gram_sums,
)
from tgo_analysis.kernels.metrics import (
    REASON_FEW_RANKS,
    REASON_ZERO_VARIANCE,
    cosine_anisotropy,
    fit_alpha,
    nonzero_mask,
    spectral_metrics,
)
from tgo_analysis.kernels.moments import (
    chunk_moments,
    covariance,
    fold_moments,
    symmetrize,
    unit_vector_sum,
)
from tgo_analysis.kernels.randomized import randomized_eigenvalues
from tgo_analysis.kernels.spectra import covariance_eigenvalues, gram_eigenvalues
from tgo_analysis.kernels.twonn import twonn_dimension

RTOL = 1e-6


def planted(n: int, d: int, alpha: float, seed: int = 0) -> np.ndarray:
    """Gaussian samples whose covariance has eigenvalues i^-alpha in a random basis."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.arange(1, d + 1, dtype=np.float64) ** (-alpha / 2)
    return (rng.standard_normal((n, d)) * scales) @ basis.T


def oracle_eigs(x: np.ndarray) -> np.ndarray:
    return np.clip(
        np.sort(np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False)))[::-1], 0, None
    )


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    """(n, T, D) with a different planted spectrum per token and a large mean offset."""
    parts = [planted(400, 120, a, seed=i) + 50.0 for i, a in enumerate((0.8, 1.0, 1.5))]
    return np.stack(parts, axis=1)


def production_fold(chunks):
    """What the per-token spectra statistic does: the in-place Chan fold, then the upper triangle."""
    acc = None
    for chunk in chunks:
        acc = fold_moments(acc, chunk)
    return symmetrize(acc)


def test_chunked_moments_equal_np_cov_for_uneven_chunks_and_dtypes(tokens: np.ndarray) -> None:
    for dtype in (np.float64, np.float32, np.float16):
        x = tokens.astype(dtype)
        cuts = [0, 7, 100, 101, 250, 400]
        merged = production_fold(x[a:b] for a, b in pairwise(cuts))
        for t in range(x.shape[1]):
            ref = np.cov(x[:, t].astype(np.float64), rowvar=False)
            np.testing.assert_allclose(covariance(merged)[t], ref, rtol=1e-9, atol=1e-12)


def test_the_in_place_merge_of_the_reduction_tree_equals_the_pure_merge(tokens: np.ndarray) -> None:
    from functools import reduce

    from tgo_analysis.kernels.moments import merge_moments, merge_moments_into

    cuts = [0, 3, 150, 151, 400]
    pure = reduce(merge_moments, [chunk_moments(tokens[a:b]) for a, b in pairwise(cuts)])
    first = chunk_moments(tokens[:3])
    kept = first.comoment.copy()
    in_place = reduce(merge_moments_into, [first] + [chunk_moments(tokens[a:b]) for a, b in pairwise(cuts[1:])])
    assert in_place.count == pure.count == 400
    np.testing.assert_allclose(in_place.mean, pure.mean, rtol=1e-12)
    np.testing.assert_allclose(in_place.comoment, pure.comoment, rtol=1e-12)
    assert not np.array_equal(first.comoment, kept), "the first operand's buffer is reused"


def test_raw_float32_sums_fail_where_the_merge_does_not() -> None:
    """One-pass E[x²]-E[x]² in float32 loses the variance of data with a large offset."""
    x = (np.random.default_rng(1).standard_normal((2000, 1, 4)) * 1e-2 + 1e3).astype(np.float32)
    ref = np.cov(x[:, 0].astype(np.float64), rowvar=False)
    raw = (x[:, 0].T @ x[:, 0] - np.outer(x[:, 0].sum(0), x[:, 0].sum(0)) / len(x)) / (len(x) - 1)
    assert np.max(np.abs(raw - ref) / np.abs(ref).max()) > 0.1
    merged = production_fold(x[i : i + 300] for i in range(0, 2000, 300))
    np.testing.assert_allclose(covariance(merged)[0], ref, rtol=1e-6)


def test_metrics_match_references(tokens: np.ndarray) -> None:
    from reptrix.alpha import get_powerlaw

    calculate_anisotropy_torch = llm_microscope_function("calculate_anisotropy_torch")

    cov = covariance(chunk_moments(tokens))
    eigs = covariance_eigenvalues(cov)
    d = tokens.shape[2]
    got = spectral_metrics(eigs, d)
    for t in range(tokens.shape[1]):
        x = tokens[:, t]
        ref = oracle_eigs(x)
        np.testing.assert_allclose(eigs[t], ref, rtol=1e-8, atol=1e-12)
        nz = ref[ref > ref[0] * d * np.finfo(np.float64).eps]
        p = nz / nz.sum()
        h = scipy.stats.entropy(p)
        np.testing.assert_allclose(got["effective_rank"][t], np.exp(h), rtol=RTOL)
        np.testing.assert_allclose(got["spectral_entropy"][t], h / np.log(nz.size), rtol=RTOL)
        np.testing.assert_allclose(
            got["spectral_flatness"][t], scipy.stats.gmean(nz) / nz.mean(), rtol=RTOL
        )
        np.testing.assert_allclose(
            got["participation_ratio"][t], nz.sum() ** 2 / (nz**2).sum(), rtol=RTOL
        )
        np.testing.assert_allclose(got["stable_rank"][t], nz.sum() / nz[0], rtol=RTOL)
        anis = calculate_anisotropy_torch(torch.from_numpy(x))
        np.testing.assert_allclose(got["top1_share"][t], anis, rtol=RTOL)
        alpha_ref = get_powerlaw(ref, np.arange(10, 100))[0]
        np.testing.assert_allclose(got["alpha"][t], alpha_ref, rtol=RTOL)


def test_spec_invariants_on_random_spectra() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        d = int(rng.integers(20, 200))
        eigs = np.sort(rng.pareto(rng.uniform(0.5, 3), d) * rng.uniform(0, 1, d) ** 3)[::-1]
        m = spectral_metrics(eigs, d)
        nnz = nonzero_mask(eigs, d).sum()
        np.testing.assert_allclose(m["top1_share"], 1 / m["stable_rank"], rtol=1e-12)
        assert m["stable_rank"] <= m["participation_ratio"] * (1 + 1e-12)
        assert m["participation_ratio"] <= m["effective_rank"] * (1 + 1e-12)
        assert m["effective_rank"] <= nnz * (1 + 1e-12)


def test_planted_power_law_alpha_is_recovered() -> None:
    for alpha in (0.8, 1.0, 1.5):
        x = planted(4 * 256, 256, alpha, seed=int(alpha * 10))
        got, r2, _ = fit_alpha(oracle_eigs(x)[None])
        assert abs(got[0] - alpha) < 0.02, (alpha, got)
        assert r2[0] > 0.99


def test_zero_variance_and_short_spectra_give_nan_with_reason() -> None:
    m = spectral_metrics(np.zeros((2, 64)), 64)
    for key in ("alpha", "effective_rank", "stable_rank", "top1_share", "spectral_flatness"):
        assert np.isnan(m[key]).all(), key
    assert (m["reason"] == REASON_ZERO_VARIANCE).all()
    alpha, _, reason = fit_alpha(np.r_[np.ones(20), np.zeros(44)][None], n_features=64)
    assert np.isnan(alpha[0]) and reason[0] == REASON_FEW_RANKS


def test_cosine_anisotropy_equals_brute_force() -> None:
    x = np.random.default_rng(4).standard_normal((60, 2, 8)) + 0.7
    got = cosine_anisotropy(unit_vector_sum(x), 60)
    for t in range(2):
        u = x[:, t] / np.linalg.norm(x[:, t], axis=1, keepdims=True)
        sims = u @ u.T
        ref = (sims.sum() - np.trace(sims)) / (60 * 59)
        np.testing.assert_allclose(got[t], ref, rtol=1e-10)


def test_token_correlation_equals_corrcoef_of_flattened_tokens() -> None:
    x = np.random.default_rng(5).standard_normal((90, 5, 7))
    x[:, 1] = 0.5 * x[:, 0] + 0.1 * x[:, 1]
    merged = merge_gram_sums(token_gram_sums(x[:40]), token_gram_sums(x[40:]))
    ref = np.corrcoef(x.transpose(1, 0, 2).reshape(5, -1))
    np.testing.assert_allclose(token_correlation(merged), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        mean_lower_triangle(ref), ref[np.tril_indices(5, -1)].mean(), rtol=1e-12
    )


def test_twonn_matches_scikit_dimension() -> None:
    from skdim.id import TwoNN

    rng = np.random.default_rng(6)
    for dim, ambient in ((3, 10), (6, 40)):
        x = rng.standard_normal((800, dim)) @ rng.standard_normal((dim, ambient))
        ref = TwoNN(discard_fraction=0.1).fit(x).dimension_
        np.testing.assert_allclose(twonn_dimension(x), ref, rtol=1e-6)
        assert abs(twonn_dimension(x) - dim) < 0.2 * dim + 0.5


def test_gram_and_randomized_spectra_equal_the_exact_spectrum() -> None:
    """A power-law spectrum (eigenvalues ~ 1/i) of 400 samples in 3000 dims: the Gram route is
    exact, and the randomized SVD (the engine's reads, here on one block) with k=200 and 4 power
    iterations gets the top 100 within 1e-3 (SPEC 3)."""
    rng = np.random.default_rng(7)
    n, f = 400, 3000
    left, _ = np.linalg.qr(rng.standard_normal((n, n)))
    right, _ = np.linalg.qr(rng.standard_normal((f, n)))
    x = (left * np.arange(1, n + 1) ** -0.5) @ right.T
    exact = np.sort(np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2 / (n - 1))[::-1]
    np.testing.assert_allclose(gram_eigenvalues(x)[: n - 1], exact[: n - 1], rtol=1e-8, atol=1e-12)
    approx = randomized_eigenvalues(x, k=200, n_power_iter=4)
    np.testing.assert_allclose(approx[:100], exact[:100], rtol=1e-3)


@pytest.mark.parametrize(
    "eigs",
    [
        np.ones(50),  # flat: every rank equals the nonzero count
        np.r_[1.0, np.zeros(49)],  # one direction
        np.r_[5.0, np.ones(30), np.zeros(19)],  # spike + flat + exact zeros
        np.arange(1, 301, dtype=np.float64) ** -1.2,  # power law
        np.r_[np.ones(10), 1e-20 * np.ones(40)],  # below the nonzero threshold: treated as zero
    ],
)
def test_spec_invariants_on_structured_spectra(eigs: np.ndarray) -> None:
    m = spectral_metrics(eigs, eigs.size)
    nnz = nonzero_mask(eigs, eigs.size).sum()
    np.testing.assert_allclose(m["top1_share"], 1 / m["stable_rank"], rtol=1e-12)
    assert m["stable_rank"] <= m["participation_ratio"] * (1 + 1e-12)
    assert m["participation_ratio"] <= m["effective_rank"] * (1 + 1e-12)
    assert m["effective_rank"] <= nnz * (1 + 1e-12)
    assert m["nonzero_count"] == nnz
    if np.all(eigs[:nnz] == eigs[0]):  # flat nonzero part: every rank measure equals nnz
        np.testing.assert_allclose(
            [m["effective_rank"], m["participation_ratio"], m["stable_rank"]], nnz
        )
        np.testing.assert_allclose(m["spectral_flatness"], 1.0)


def test_twonn_drops_duplicate_points_like_scikit_dimension() -> None:
    import warnings

    from skdim.id import TwoNN

    x = np.random.default_rng(8).standard_normal((300, 4)) @ np.random.default_rng(
        9
    ).standard_normal((4, 12))
    x = np.concatenate([x, x[:20]])  # 20 exact duplicates: r1 = 0 for 40 points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TwoNN(discard_fraction=0.1).fit(x).dimension_
    np.testing.assert_allclose(twonn_dimension(x), ref, rtol=1e-6)
    assert np.isfinite(twonn_dimension(x))
