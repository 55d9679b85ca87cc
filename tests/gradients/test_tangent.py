"""Tangent vs control statistics: float64 brute force, planted subspace, isotropic gradients."""

from __future__ import annotations

import numpy as np
import pytest

from tgo_analysis.kernels.seminmf import fit_seminmf
from tgo_analysis.kernels.tangent_energy import (
    alignment,
    control_bases,
    energy,
    pca_bases,
    second_moment,
    tangent_basis,
    tangent_statistics,
    top_eigenvectors,
)

D, R = 48, 4


def orthonormal(rng, d, k):
    return np.linalg.qr(rng.standard_normal((d, k)))[0]


def test_control_bases_are_orthonormal_and_orthogonal_to_tangent():
    rng = np.random.default_rng(0)
    q = orthonormal(rng, D, R)
    controls = control_bases(q, draws=5, seed=1)
    assert controls.shape == (5, D, R)
    for c in controls:
        np.testing.assert_allclose(c.T @ c, np.eye(R), atol=1e-12)
        np.testing.assert_allclose(q.T @ c, 0, atol=1e-12)
    np.testing.assert_array_equal(controls, control_bases(q, draws=5, seed=1))


def test_energies_match_brute_force():
    rng = np.random.default_rng(2)
    g = rng.standard_normal((7, 5, D)).astype(np.float16)
    valid = rng.random((7, 5)) > 0.3
    buckets = rng.integers(-1, 3, size=(7, 5))
    q = orthonormal(rng, D, R)
    rows = g.astype(np.float64)[valid]
    brute = sum(float(np.sum((q.T @ x) ** 2)) for x in rows) / sum(float(x @ x) for x in rows)
    moment, count = second_moment(g, valid)
    assert count == valid.sum()
    assert energy(moment, q) == pytest.approx(brute, rel=1e-12)
    per_bucket, _ = second_moment(g, valid, buckets, n_buckets=3)
    np.testing.assert_allclose(per_bucket.sum(axis=0), moment, rtol=1e-12)
    for b in range(3):
        sel = g.astype(np.float64)[valid & (buckets == b)]
        want = sum(float(np.sum((q.T @ x) ** 2)) for x in sel) / sum(float(x @ x) for x in sel)
        assert energy(per_bucket[b], q) == pytest.approx(want, rel=1e-12)


def planted_layer(rng, n=600, noise=1e-3):
    """Activations that are non-negative mixtures of R directions, and the true row space."""
    w = rng.standard_normal((R, D))
    acts = rng.exponential(size=(n, R)) @ w + noise * rng.standard_normal((n, D))
    return acts, np.linalg.qr(w.T)[0]


def test_gradients_inside_the_planted_subspace_are_enriched_and_aligned():
    rng = np.random.default_rng(3)
    acts, true_basis = planted_layer(rng)
    q_t = tangent_basis(fit_seminmf(acts, R, iterations=1000, tolerance=1e-10).dictionary)
    grads = rng.standard_normal((2000, R)) * [5, 3, 2, 1] @ true_basis.T
    grads += 0.01 * rng.standard_normal(grads.shape)
    stats = tangent_statistics(second_moment(grads)[0], q_t, control_bases(q_t, 20, seed=4))
    assert stats.isotropic == R / D
    assert stats.tangent_energy > 0.99
    assert stats.tangent_enrichment > 100
    assert stats.tangent_alignment > 0.99
    assert stats.control_alignment < 0.01


def test_isotropic_gradients_give_enrichment_one_and_alignment_r_over_d():
    rng = np.random.default_rng(5)
    acts, _ = planted_layer(rng)
    q_t = tangent_basis(fit_seminmf(acts, R, iterations=300).dictionary)
    controls = control_bases(q_t, 200, seed=6)
    grads = rng.standard_normal((4000, D))
    stats = tangent_statistics(second_moment(grads)[0], q_t, controls)
    spread = stats.control_energy.std()
    assert abs(stats.tangent_energy - stats.control_energy.mean()) < 4 * spread
    assert abs(stats.tangent_enrichment - 1) < 4 * spread / stats.control_energy.mean()
    assert stats.control_energy.mean() == pytest.approx(R / D, rel=0.05)
    assert stats.control_alignment == pytest.approx(R / D, rel=0.25)
    # the tangent alignment is one more draw from the controls' distribution
    per_draw = alignment(controls, top_eigenvectors(second_moment(grads)[0], R))
    assert abs(stats.tangent_alignment - per_draw.mean()) < 4 * per_draw.std()


def test_zero_gradients_give_nan_not_an_error():
    q = orthonormal(np.random.default_rng(0), D, R)
    stats = tangent_statistics(np.zeros((2, D, D)), q, control_bases(q, 3, seed=0))
    assert np.isnan(stats.tangent_enrichment).all() and np.isnan(stats.tangent_alignment).all()


def test_too_large_a_rank_for_controls_is_a_value_error():
    q = orthonormal(np.random.default_rng(0), 10, 6)
    with pytest.raises(ValueError, match="rank"):
        control_bases(q, 2, seed=0)


def test_the_statistic_words_kernel_errors_as_one_line_tgo_errors():
    from tgo_analysis.statistics import tangent_kernels as TK
    from tgo_store.errors import TgoError

    q = orthonormal(np.random.default_rng(0), 10, 6)
    for call, said in ((lambda: TK.control_bases(q, 2, seed=0), "--tangent-rank"),
                       (lambda: TK.tangent_basis(np.zeros((3, 10))), "no tangent subspace"),
                       (lambda: TK.check_rank(10, 10), "--tangent-rank")):
        with pytest.raises(TgoError, match=said) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("samples", [12, 600])  # few samples of many positions: per-sample moments; else per column
def test_every_replicate_q_p_is_the_top_eigenspace_of_its_weighted_moment(samples):
    """``pca_bases`` against the float64 definition: the top-k eigenvectors of Σ_i w_(s(i))b a_i a_iᵀ,
    each point repeated by its sample's weight."""
    rng = np.random.default_rng(7)
    points = rng.standard_normal((600, 10)) * np.linspace(3, 0.2, 10)
    owners = rng.integers(0, samples, 600) if samples < 600 else np.arange(600)
    weights = rng.poisson(1.0, (samples, 4)).astype(np.float64)
    got = pca_bases(points, owners, weights, 3)
    assert got.shape == (4, 10, 3)
    for b in range(4):
        repeated = np.repeat(points, weights[owners, b].astype(int), axis=0)
        want = np.linalg.svd(repeated, full_matrices=False)[2][:3].T
        np.testing.assert_allclose(got[b] @ got[b].T, want @ want.T, atol=1e-10)
