"""The sparse semi-NMF (``kernels.sparse_seminmf``): monotone objective, the KKT conditions of its
penalised problem at convergence (a float64 check independent of the update formulas), planted
atoms recovered where plain semi-NMF mixes them, and weights equal to repeated rows."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gradients.tangent_stores import sparse_activations
from tgo_analysis.kernels.seminmf import fit_seminmf
from tgo_analysis.kernels.sparse_seminmf import fit_sparse_seminmf


def planted(seed: int, n: int = 160, d: int = 64, atoms: int = 8) -> tuple[np.ndarray, np.ndarray]:
    x, _, w = sparse_activations(np.random.default_rng(seed), n, 1, d, atoms, noise=0.05, probability=0.35)
    return x[:, 0], w


def nearest_cos(fitted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """|cos| of each planted atom to its nearest fitted atom."""
    a = true / np.linalg.norm(true, axis=1, keepdims=True)
    b = fitted / np.linalg.norm(fitted, axis=1, keepdims=True)
    return np.abs(a @ b.T).max(axis=1)


def test_objective_never_increases_and_atoms_have_unit_norm():
    x, _ = planted(0)
    weights = np.random.default_rng(1).integers(1, 4, len(x)).astype(float)
    for w in (None, weights):
        fit = fit_sparse_seminmf(x, 8, sparsity=0.1, iterations=200, weights=w)
        assert (np.diff(fit.objective) <= 1e-12 * fit.objective[0]).all()
        assert np.allclose(np.linalg.norm(fit.dictionary, axis=1), 1.0)
        assert (fit.codes >= 0).all()


def test_converged_fit_meets_the_kkt_conditions_of_its_penalised_problem():
    """At convergence each code row solves min_z≥0 ‖a − zW‖² + 2λΣz for the fitted W: gradient
    2(zW − a)Wᵀ + 2λ is 0 on the support and ≥ 0 off it (checked in float64 from A, Z, W alone)."""
    x, _ = planted(2)
    fit = fit_sparse_seminmf(x, 8, sparsity=0.1, iterations=5000, tolerance=1e-12)
    assert fit.converged
    z, w = fit.codes, fit.dictionary
    price = 0.1 * np.sqrt((x * x).sum(1).mean())
    gradient = (z @ w - x) @ w.T + price
    scale = np.abs(x @ w.T).max()
    assert np.abs(gradient[z > 0]).max() < 1e-4 * scale
    assert gradient[z == 0].min() > -1e-4 * scale
    assert (z == 0).mean() > 0.3  # the price makes exact zeros, plain semi-NMF's codes stay positive


def test_planted_atoms_are_recovered_where_plain_seminmf_mixes_them():
    sparse = [nearest_cos(fit_sparse_seminmf(x, 8, sparsity=0.1, seed=s).dictionary, w).min()
              for s, (x, w) in enumerate(planted(s) for s in range(5))]
    plain = [nearest_cos(fit_seminmf(x, 8, seed=s).dictionary, w).min()
             for s, (x, w) in enumerate(planted(s) for s in range(5))]
    assert min(sparse) > 0.95
    assert np.mean(plain) < 0.8  # the mixing this fit exists to undo


def test_integer_weights_equal_repeated_rows():
    x, _ = planted(3, n=40, d=16, atoms=4)
    times = np.random.default_rng(0).integers(1, 4, len(x))
    start = np.random.default_rng(1).random((len(x), 4)) + 0.1
    weighted = fit_sparse_seminmf(x, 4, iterations=30, tolerance=0, init=start, weights=times.astype(float))
    repeated = fit_sparse_seminmf(np.repeat(x, times, axis=0), 4, iterations=30, tolerance=0,
                                  init=np.repeat(start, times, axis=0))
    assert np.allclose(weighted.dictionary, repeated.dictionary, atol=1e-8)
    assert np.allclose(weighted.objective, repeated.objective, rtol=1e-9)


def test_float32_products_move_a_weighted_refit_by_rounding_only():
    """A bootstrap refit's products in float32: the same fit to float32 rounding, recorded in its options."""
    x, _ = planted(5, n=400, d=32, atoms=4)
    times = np.random.default_rng(0).poisson(1.0, len(x)) + 1.0
    start = np.random.default_rng(1).random((len(x), 4)) + 0.1
    exact = fit_sparse_seminmf(x, 4, iterations=8, tolerance=0, init=start, weights=times)
    fast = fit_sparse_seminmf(x, 4, iterations=8, tolerance=0, init=start, weights=times, precision=np.float32)
    assert fast.options["products"] == "float32" and "products" not in exact.options
    assert fast.dictionary.dtype == np.float64 and fast.codes.dtype == np.float64
    difference = np.abs(fast.dictionary - exact.dictionary).max()
    assert 0 < difference < 1e-4  # float32 rounding moved it, and only that
    assert np.allclose(fast.objective, exact.objective, rtol=1e-5)


def test_bad_input_is_a_value_error():
    x, _ = planted(0, n=20, d=8, atoms=2)
    with pytest.raises(ValueError, match="sparsity"):
        fit_sparse_seminmf(x, 2, sparsity=-1)
    with pytest.raises(ValueError, match="warm start"):
        fit_sparse_seminmf(x, 2, init=np.zeros((20, 2)))
