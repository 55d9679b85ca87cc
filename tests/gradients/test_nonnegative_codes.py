"""The batched NNLS codes of the local tangent test equal scipy's Lawson-Hanson, point by point."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from tgo_analysis.kernels.tangent_local import batched_nnls, code_solver, nonnegative_codes


@pytest.mark.parametrize("rank", [1, 3, 8, 16])
def test_codes_equal_scipy_nnls_per_point(rank: int) -> None:
    rng = np.random.default_rng(rank)
    atoms = np.abs(rng.standard_normal((rank, 48))) + 0.5 * rng.standard_normal((rank, 48))
    points = np.vstack([rng.standard_normal((300, 48)) * 2 + atoms.mean(0),  # mixed signs: some codes zero
                        np.abs(rng.standard_normal((50, rank))) @ atoms,  # exactly in the cone
                        -atoms[:1].repeat(5, 0), np.zeros((3, 48))])  # every code zero
    codes = nonnegative_codes(points, code_solver(atoms))
    reference = np.array([nnls(atoms.T, p)[0] for p in points])
    np.testing.assert_allclose(codes, reference, rtol=0, atol=1e-9 * max(1.0, np.abs(reference).max()))
    assert (codes >= 0).all() and (codes[-8:] == 0).all()


def test_a_rank_deficient_dictionary_falls_back_to_scipy() -> None:
    rng = np.random.default_rng(0)
    base = np.abs(rng.standard_normal((3, 20)))
    atoms = np.vstack([base, base[:1] + base[1:2]])  # 4 atoms spanning 3 dimensions
    points = rng.standard_normal((40, 20)) + base.sum(0)
    codes = nonnegative_codes(points, code_solver(atoms))
    reduced = code_solver(atoms).reduced
    assert reduced.shape[0] == 3
    reference = np.array([nnls(reduced, b)[0] for b in points @ code_solver(atoms).project.T])
    np.testing.assert_array_equal(codes, reference)


def test_rows_not_certified_are_returned_for_the_exact_solver() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((12, 12))
    gram = a.T @ a + 1e-3 * np.eye(12)  # ill-conditioned: one sweep cannot find every support
    c = rng.standard_normal((200, 12))
    codes, left = batched_nnls(gram, c, rounds=1, sweeps=1)
    assert left.size > 0
    done = np.setdiff1d(np.arange(200), left)
    chol = np.linalg.cholesky(gram)  # ‖Lᵀz − L⁻¹c‖² has the same minimiser
    reference = np.array([nnls(chol.T, np.linalg.solve(chol, row))[0] for row in c[done]])
    np.testing.assert_allclose(codes[done], reference, atol=1e-8)


def test_the_default_rounds_certify_an_ill_conditioned_dictionary_without_scipy() -> None:
    """Correlated atoms (a fitted dictionary's usual shape) need more than a few sweeps to find each
    support; the defaults certify every row, and the codes are scipy's."""
    rng = np.random.default_rng(2)
    atoms = rng.standard_normal((16, 64)) + 3 * rng.standard_normal(64)  # atoms share one direction
    points = np.abs(rng.standard_normal((400, 16))) @ atoms + 0.5 * rng.standard_normal((400, 64))
    solver = code_solver(atoms)
    a = solver.reduced
    _, left = batched_nnls(a.T @ a, (points @ solver.project.T) @ a)
    assert left.size == 0
    reference = np.array([nnls(atoms.T, p)[0] for p in points])
    np.testing.assert_allclose(nonnegative_codes(points, solver), reference, atol=1e-8 * np.abs(reference).max())


def test_the_batched_solve_equals_the_pseudo_inverse_and_falls_back_on_a_singular_set() -> None:
    from tgo_analysis.kernels.tangent_local import projected_shares

    rng = np.random.default_rng(3)
    atoms = rng.standard_normal((8, 32))
    g = rng.standard_normal((300, 32))
    active = rng.random((300, 8)) < 0.4
    solver = code_solver(atoms)
    np.testing.assert_allclose(projected_shares(g, active, solver, solve=True), projected_shares(g, active, solver),
                               rtol=1e-10)
    twin = code_solver(np.vstack([atoms[:7], atoms[:1]]))  # atoms 0 and 7 equal: H_AA singular where both are active
    both = active.copy()
    both[0, [0, 7]] = True
    np.testing.assert_allclose(projected_shares(g, both, twin, solve=True), projected_shares(g, both, twin), rtol=1e-10)
