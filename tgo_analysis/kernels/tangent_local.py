"""Per-position tangency (SPEC section 5): each position's own semi-NMF atoms against its gradient.

The global tangent energy asks whether the gradients lie in the span of ALL r atoms; at rank r
that span is close to the top principal subspace, so it cannot tell "tangent" from "high
variance". The paper's proxies are concepts: at position i only the atoms active in its code
z_i ≥ 0 describe where x_i sits. Here (pure numpy, float64):

- codes: z_i = argmin_{z ≥ 0} ‖Wᵀz − x_i‖² for the fitted dictionary W (r, D), solved exactly
  (Lawson-Hanson NNLS, ``scipy.optimize.nnls``) on the equivalent r-dim problem
  ‖S Vᵀ z − Uᵀx‖² from the thin SVD Wᵀ = U S Vᵀ (the residual outside span(U) is a constant);
- activity rule (``ACTIVITY_RULE``): atom j is active at i when z_ij > fraction · max_j z_ij;
- share: ‖P_A g‖² / ‖g‖² with P_A the projector on span{w_j : j ∈ A}, computed as
  b_Aᵀ (H_AA)⁺ b_A with b = W g and H = W Wᵀ, one pseudo-inverse per distinct active set;
- radial share: ⟨g, x/‖x‖⟩² / ‖g‖², the direction a norm layer treats apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

DEFAULT_ACTIVE_FRACTION = 0.5
ACTIVITY_RULE = ("atom j is active at position i when its non-negative least-squares code "
                 "z_ij > {fraction} * max_j z_ij (z_i = argmin_{{z >= 0}} ||W^T z - x_i||^2, the fitted W "
                 "fixed); a position with an all-zero code has no active atom (share 0)")


@dataclass(frozen=True)
class CodeSolver:
    """The fixed-dictionary pieces of every position's NNLS: A = S Vᵀ (k, r), Uᵀ (k, D), H = WWᵀ."""

    reduced: np.ndarray
    project: np.ndarray
    dictionary: np.ndarray
    gram: np.ndarray


def code_solver(dictionary: np.ndarray) -> CodeSolver:
    w = np.asarray(dictionary, dtype=np.float64)
    u, s, vt = np.linalg.svd(w.T, full_matrices=False)
    keep = s > (s[0] if s.size else 0.0) * max(w.shape) * np.finfo(np.float64).eps
    return CodeSolver(s[keep, None] * vt[keep], u[:, keep].T.copy(), w, w @ w.T)


def nonnegative_codes(points: np.ndarray, solver: CodeSolver) -> np.ndarray:
    """(n, r) codes z_i ≥ 0 of points (n, D) for the solver's dictionary (exact NNLS per point)."""
    b = np.asarray(points, dtype=np.float64) @ solver.project.T
    out = np.zeros((b.shape[0], solver.dictionary.shape[0]))
    for i in range(b.shape[0]):
        out[i] = nnls(solver.reduced, b[i])[0]
    return out


def active_atoms(codes: np.ndarray, fraction: float = DEFAULT_ACTIVE_FRACTION) -> np.ndarray:
    """(n, r) bool: the activity rule (z_ij > fraction · max_j z_ij, and z_ij > 0)."""
    z = np.asarray(codes, dtype=np.float64)
    top = z.max(axis=1, keepdims=True) if z.size else np.zeros((z.shape[0], 1))
    return (z > fraction * top) & (z > 0)


def projected_shares(gradients: np.ndarray, active: np.ndarray, solver: CodeSolver) -> np.ndarray:
    """(n,) ‖P_{A_i} g_i‖² / ‖g_i‖² for gradients (n, D) and active sets (n, r); NaN where g = 0."""
    g = np.asarray(gradients, dtype=np.float64)
    b = g @ solver.dictionary.T
    norm = np.einsum("ij,ij->i", g, g)
    inside = np.zeros(g.shape[0])
    if g.shape[0]:
        sets, which = np.unique(np.asarray(active, bool), axis=0, return_inverse=True)
        for s, atoms in enumerate(sets):
            if not atoms.any():
                continue
            rows = np.flatnonzero(which.reshape(-1) == s)
            inverse = np.linalg.pinv(solver.gram[np.ix_(atoms, atoms)], hermitian=True)
            part = b[np.ix_(rows, atoms)]
            inside[rows] = np.einsum("ij,jk,ik->i", part, inverse, part)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, inside / np.where(norm > 0, norm, 1.0), np.nan)


def radial_shares(gradients: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n,) ⟨g_i, x_i/‖x_i‖⟩² / ‖g_i‖²; NaN where g or x is zero."""
    g = np.asarray(gradients, dtype=np.float64)
    x = np.asarray(points, dtype=np.float64)
    dot = np.einsum("ij,ij->i", g, x)
    denominator = np.einsum("ij,ij->i", g, g) * np.einsum("ij,ij->i", x, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, dot**2 / np.where(denominator > 0, denominator, 1.0), np.nan)
