"""Per-position tangency (SPEC section 5): each position's own semi-NMF atoms against its gradient.

The global tangent energy asks whether the gradients lie in the span of ALL r atoms; at rank r
that span is close to the top principal subspace, so it cannot tell "tangent" from "high
variance". The paper's proxies are concepts: at position i only the atoms active in its code
z_i ≥ 0 describe where x_i sits. Here (pure numpy, float64):

- codes: z_i = argmin_{z ≥ 0} ‖Wᵀz − x_i‖² for the fitted dictionary W (r, D), solved exactly
  on the equivalent r-dim problem ‖S Vᵀ z − Uᵀx‖² from the thin SVD Wᵀ = U S Vᵀ (the residual
  outside span(U) is a constant), for every position at once (``batched_nnls``: coordinate
  descent finds each support, the KKT conditions certify the least-squares solution on it; a
  loop of ``scipy.optimize.nnls`` calls cost about 20-60 µs a position, minutes for a layer's
  millions of held-out positions); ``scipy.optimize.nnls`` per position where the dictionary is
  rank-deficient (the problem is then not strictly convex) or a position is not certified;
- activity rule (``ACTIVITY_RULE``): atom j is active at i when it is in the NNLS support and its
  contribution to the reconstruction, z_ij ‖w_j‖, exceeds ``fraction`` · ‖Wᵀz_i‖. The earlier rule
  (z_ij > 0.5 · max_j z_ij) compared raw codes of atoms of different norms and kept about half of
  a planted position's truly active atoms, which halved the local test's signal;
- share: ‖P_A g‖² / ‖g‖² with P_A the projector on span{w_j : j ∈ A}, computed as
  b_Aᵀ (H_AA)⁺ b_A with b = W g and H = W Wᵀ, one pseudo-inverse per distinct active set;
- radial share: ⟨g, x/‖x‖⟩² / ‖g‖², the direction a norm layer treats apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis.kernels.coordinate_descent import nonnegative_sweep

DEFAULT_ACTIVE_FRACTION = 0.25
JUMP_ROUNDS = 4  # KKT active-set jumps after the first descent, before descent resumes
ACTIVITY_RULE = ("atom j is active at position i when it is in the support of the non-negative least-squares "
                 "code z_i = argmin_{{z >= 0}} ||W^T z - x_i||^2 (the fitted W fixed) and its contribution to the "
                 "reconstruction z_ij * ||w_j|| exceeds {fraction} * ||W^T z_i||; a position with an all-zero code "
                 "has no active atom (share 0)")


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
    a = solver.reduced
    if a.shape[0] < a.shape[1]:  # rank-deficient dictionary: several minimisers, take scipy's
        return _scipy_codes(a, b, np.arange(b.shape[0]))
    gram, c = a.T @ a, b @ a
    codes, unfinished = batched_nnls(gram, c)
    codes[unfinished] = _scipy_codes(a, b, unfinished)
    return codes


def _scipy_codes(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    # imported here, not with the module: scipy.optimize costs every `tgo` start-up most of a second
    from scipy.optimize import nnls

    out = np.zeros((rows.size, a.shape[1]))
    for i, row in enumerate(rows):
        out[i] = nnls(a, b[row])[0]
    return out


def restricted_systems(gram: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """(m, r, r) H restricted to each row's ``chosen`` atoms (m, r) bool, the identity elsewhere.
    Built by products with the rows' 0/1 masks: the same array as ``np.where`` on
    the (m, r, r) outer mask makes, in half its time."""
    m, r = chosen.shape
    ones = chosen.astype(np.float64)
    system = np.multiply(ones[:, :, None], gram, out=np.empty((m, r, r)))  # C order: the diagonal view below
    system *= ones[:, None, :]
    system += 0.0  # -0.0 (a negative entry times 0) becomes 0.0: LAPACK's sign choices then match np.where's
    system.reshape(m, r * r)[:, ::r + 1] += 1.0 - ones
    return system


def restricted_solve(gram: np.ndarray, chosen: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """(m, r): each row's solution of H_AA z_A = rhs_A on its ``chosen`` atoms A (m, r) bool, zero elsewhere.

    Rows are grouped by |A| and each group's systems are gathered at their own size: an LU costs
    with its size (a 4-atom system a seventh of a 16-atom one), and the rows' atoms are few. The same
    solutions as the identity-padded ``restricted_systems`` give, up to rounding; LinAlgError when an
    H_AA is singular."""
    m, r = chosen.shape
    out = np.zeros((m, r))
    sizes = chosen.sum(axis=1)
    atoms = np.argsort(~chosen, axis=1, kind="stable")  # each row's chosen atoms first, in index order
    for k in np.unique(sizes[sizes > 0]):
        rows = np.flatnonzero(sizes == k)
        at = atoms[rows, :k]
        system = gram[at[:, :, None], at[:, None, :]]
        b = np.take_along_axis(rhs[rows], at, axis=1)
        out[rows[:, None], at] = np.linalg.solve(system, b[..., None])[..., 0]
    return out


def batched_nnls(gram: np.ndarray, c: np.ndarray, rounds: int = 16, sweeps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """argmin_{z ≥ 0} ½zᵀHz − cᵀz for every row of c (m, r), H = AᵀA positive definite (r, r).

    Cyclic coordinate descent on all rows together finds each row's support; the least-squares
    solution on that support is then certified optimal by the KKT conditions (positive on the
    support, dual c − Hz ≤ 0 off it), which make it the exact minimiser of this strictly convex
    problem. Rows are certified after every ``sweeps`` sweeps and leave the descent; the others
    resume it from their restricted solution clipped at 0 (a jump towards the support: a fitted,
    correlated dictionary's rows then certify in about 4 rounds instead of about 11). After the
    first round, ``JUMP_ROUNDS`` rounds move each uncertified row's
    support by the KKT conditions instead (drop the atoms its restricted solution puts at or below 0,
    add those with a positive dual): rows near their support certify in one or two of them, where
    descent took several rounds or left a row to scipy. Returns the
    codes and the rows still uncertified after ``rounds`` rounds, which the caller solves one by one.
    """
    m, r = c.shape
    out = np.zeros((m, r))
    if not (m and r):
        return out, np.arange(0)
    diagonal = np.diag(gram)
    z = np.zeros((r, m))  # feature-major: each coordinate update reads and writes one contiguous row
    target = np.ascontiguousarray(c.T)
    todo = np.arange(m)
    passive = np.zeros((m, r), bool)
    for round_ in range(rounds + JUMP_ROUNDS):
        if not 1 <= round_ < 1 + JUMP_ROUNDS:  # descend once, then jump, then descend again
            for _ in range(sweeps):
                nonnegative_sweep(z, target, gram, diagonal)
            passive = (z > 0).T
        rows = c[todo]
        solution = restricted_solve(gram, passive, rows)  # zero off each row's passive atoms
        dual = rows - solution @ gram
        tolerance = 1e-10 * np.maximum(np.abs(rows).max(axis=1, keepdims=True), np.finfo(np.float64).tiny)
        certified = np.all(~passive | (solution > 0), axis=1) & np.all(passive | (dual <= tolerance), axis=1)
        out[todo[certified]] = solution[certified]
        # the next support: a jump (drop the atoms the solution left at or below 0, add those whose dual
        # is positive) while jumping, else descent from the clipped solution
        passive = ((passive & (solution > 0)) | (~passive & (dual > tolerance)))[~certified]
        z = np.maximum(solution[~certified], 0.0).T.copy()
        todo, target = todo[~certified], target[:, ~certified]
        if not todo.size:
            break
    return out, todo


def active_atoms(codes: np.ndarray, dictionary: np.ndarray, fraction: float = DEFAULT_ACTIVE_FRACTION) -> np.ndarray:
    """(n, r) bool: the activity rule (z_ij > 0 and z_ij ‖w_j‖ > fraction · ‖Wᵀz_i‖)."""
    z = np.asarray(codes, dtype=np.float64)
    w = np.asarray(dictionary, dtype=np.float64)
    contribution = z * np.linalg.norm(w, axis=1)
    gram = w @ w.T  # ‖Wᵀz‖² = zᵀ(WWᵀ)z: r x r work per position, no (n, D) reconstruction in memory
    reconstruction = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", z, gram, z), 0.0, None))[:, None]
    return (contribution > fraction * reconstruction) & (z > 0)


def projected_shares(gradients: np.ndarray, active: np.ndarray, solver: CodeSolver, solve: bool = False) -> np.ndarray:
    """(n,) ‖P_{A_i} g_i‖² / ‖g_i‖² for gradients (n, D) and active sets (n, r); NaN where g = 0.

    b_Aᵀ (H_AA)⁺ b_A for every position at once: H restricted to each position's atoms (identity
    elsewhere, with b zero there) and pseudo-inverted as one stack, so no Python loop runs over the
    distinct active sets (a rule that keeps several atoms makes thousands of them). ``solve``: LU
    solves of each H_AA at its own size instead (``restricted_solve``: equal up to rounding where
    every H_AA is invertible; the pseudo-inverse when one is singular), for the bootstrap's replicate
    frames, each scored once a unit."""
    g = np.asarray(gradients, dtype=np.float64)
    b = g @ solver.dictionary.T
    norm = np.einsum("ij,ij->i", g, g)
    atoms = np.asarray(active, bool)
    inside = np.zeros(g.shape[0])
    if g.shape[0] and atoms.any():
        part = np.where(atoms, b, 0.0)
        inside = _quadratic_solve(solver.gram, atoms, part) if solve else None
        if inside is None:
            system = restricted_systems(solver.gram, atoms)
            inside = np.einsum("ij,ijk,ik->i", part, np.linalg.pinv(system, hermitian=True), part)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, inside / np.where(norm > 0, norm, 1.0), np.nan)


def _quadratic_solve(gram: np.ndarray, atoms: np.ndarray, part: np.ndarray) -> np.ndarray | None:
    """b_iᵀ (H_AA)⁻¹ b_i for each row's atoms A; None when one H_AA is singular."""
    try:
        out = np.einsum("ij,ij->i", part, restricted_solve(gram, atoms, part))
    except np.linalg.LinAlgError:
        return None
    return out if np.isfinite(out).all() else None


def radial_shares(gradients: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n,) ⟨g_i, x_i/‖x_i‖⟩² / ‖g_i‖²; NaN where g or x is zero."""
    g = np.asarray(gradients, dtype=np.float64)
    x = np.asarray(points, dtype=np.float64)
    dot = np.einsum("ij,ij->i", g, x)
    denominator = np.einsum("ij,ij->i", g, g) * np.einsum("ij,ij->i", x, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, dot**2 / np.where(denominator > 0, denominator, 1.0), np.nan)
