"""Sparse semi-NMF: A ≈ Z·W with codes Z ≥ 0, unit-norm atoms ‖w_j‖ = 1 and an L1 price on the codes.

Why not plain semi-NMF for the local tangent test: semi-NMF is not unique. When the true codes
are sparse (each position uses a few atoms), Z' = Z·M⁻¹ and W' = M·W fit exactly as well for any
non-negative M⁻¹, so Ding's multiplicative updates stop at atoms that are mixtures of the planted
ones (|cos| 0.56-0.76 to the nearest planted atom on SPEC 8's planted stores). Every mixture puts
more non-zeros in the codes, so an L1 price picks the unmixed factorisation: on a planted store of
8 atoms in D = 64 (each active with probability 0.35) the local share rises from 1.33x its null to
2.71x (the true atoms give 2.70x). The span of W, which the global tangent statistics use, is the
same subspace in both fits.

The objective, for row weights t (all 1 by default) and λ = ``sparsity`` · RMS‖a_i‖ (so the price
scales with the activations and ``sparsity`` has no units):

    F(Z, W) = Σ_i t_i (‖a_i − z_i W‖² + 2λ Σ_j z_ij),   Z ≥ 0,  ‖w_j‖ = 1,

minimised by exact block coordinate descent (HALS, Cichocki & Phan 2009; Gillis 2014), so F
never increases:

- atom j, the others fixed: w_j = r_j / ‖r_j‖ with r_j = (ZᵀTA)_j − Σ_{k≠j} (ZᵀTZ)_jk w_k, the
  minimiser of F on the unit sphere (an unused atom, r_j = 0, keeps its direction);
- code column j, the others fixed: z_j = max(0, z_j + (A w_jᵀ − λ − Z (WWᵀ)_j) / ‖w_j‖²), the
  exact minimiser of each row's convex problem in that coordinate (a row's weight scales its
  whole problem, so it does not move the minimiser).

It stops when one iteration lowers F by less than the tolerance times the activations' centred
energy, as ``kernels.seminmf`` does; HALS converges in tens of iterations where the
multiplicative updates run into their cap. Pure numpy, float64; bad input is a ValueError.
"""

from __future__ import annotations

import numpy as np

from tgo_analysis.kernels.coordinate_descent import nonnegative_sweep
from tgo_analysis.kernels.seminmf import DEFAULT_ITERATIONS, DEFAULT_TOLERANCE, SemiNMFResult, start

DEFAULT_SPARSITY = 0.1  # λ / RMS‖a_i‖: 0.03-0.1 recover planted atoms (0.1 best over the stores tried)


def fit_sparse_seminmf(a: np.ndarray, rank: int, *, sparsity: float = DEFAULT_SPARSITY,
                       iterations: int = DEFAULT_ITERATIONS, tolerance: float = DEFAULT_TOLERANCE, seed: int = 0,
                       init: np.ndarray | None = None, weights: np.ndarray | None = None,
                       precision: type = np.float64) -> SemiNMFResult:
    """Fit A (n, D) ≈ Z·W, Z ≥ 0 (n, r), unit-norm rows of W (r, D), with the L1 price ``sparsity``.

    ``init`` (n, r) ≥ 0 warm-starts the codes (a bootstrap refit from the main fit's codes);
    ``weights`` (n,) > 0 weigh the rows (a bootstrap replicate's repeat counts); ``precision``: the
    dtype of each iteration's two n x D products, WAᵀ and ZᵀTA (np.float32 halves their time for a
    bootstrap refit, whose replicates then move by about 1e-8; everything else stays float64)."""
    if sparsity < 0:
        raise ValueError(f"the sparsity price must be at least 0, got {sparsity}")
    a, z, options = start(a, rank, iterations=iterations, tolerance=tolerance, seed=seed, device="cpu", init=init,
                          zeros=True)
    t = np.ones(a.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if t.shape != (a.shape[0],) or not (t > 0).all():
        raise ValueError(f"row weights must be positive, one per row ({a.shape[0]}), got shape {t.shape}")
    total = float(t.sum())
    aa = float(t @ np.einsum("ij,ij->i", a, a))  # no n × D temporaries: the fit runs inside a memory budget
    weighted_sum = t @ a
    price = sparsity * float(np.sqrt(aa / total))
    scale = max(aa - float(weighted_sum @ weighted_sum) / total, 0.0) or aa  # the centred energy
    options.update(sparsity=float(sparsity), price=price, algorithm="HALS, unit-norm atoms, L1 price on codes")
    ta = a  # T·A, the rows scaled by their weights (A itself when unweighted)
    if weights is not None:
        options["weighted"] = True
        ta = t[:, None] * a
    if precision is not np.float64:
        options["products"] = np.dtype(precision).name
        a, ta = a.astype(precision), ta.astype(precision)
    zt = np.ascontiguousarray(z.T)  # code-major: a coordinate update reads and writes one contiguous row
    w = _first_atoms(zt, ta, t, seed)
    history = [_objective(aa, *_moments(zt, ta, t), w, zt, t, price)]
    converged = history[0] == 0.0
    while not converged and len(history) <= iterations:
        _update_codes(zt, a, w, price)
        za, zz = _moments(zt, ta, t)  # the atoms' update and the objective share them (half the n-sized work)
        w = _update_atoms(za, zz, w)
        history.append(_objective(aa, za, zz, w, zt, t, price))
        converged = history[-1] == 0.0 or (history[-2] - history[-1]) <= tolerance * scale
    return SemiNMFResult(np.ascontiguousarray(zt.T), w, np.asarray(history), len(history) - 1, converged, options)


def _first_atoms(zt: np.ndarray, ta: np.ndarray, t: np.ndarray, seed: int) -> np.ndarray:
    """The least-squares dictionary of the starting codes, each row scaled to unit norm (its code
    row takes the norm, so Z·W is unchanged); a zero row gets a seeded random direction and no code."""
    w = np.linalg.pinv((zt * t) @ zt.T, hermitian=True) @ _product(zt, ta)
    norms = np.linalg.norm(w, axis=1)
    dead = norms == 0
    if dead.any():
        w[dead] = np.random.default_rng(seed).standard_normal((int(dead.sum()), w.shape[1]))
        norms[dead] = np.linalg.norm(w[dead], axis=1)
        zt[dead] = 0.0
    zt *= np.where(dead, 1.0, norms)[:, None]
    return w / norms[:, None]


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ right in the precision of ``right`` (A or TA: float64, or a refit's float32 copies), as float64."""
    if right.dtype == np.float64:
        return left @ right
    return (left.astype(right.dtype) @ right).astype(np.float64)


def _update_codes(zt: np.ndarray, a: np.ndarray, w: np.ndarray, price: float) -> None:
    """One HALS sweep over the code columns, in place (unit atoms: the diagonal of WWᵀ is 1)."""
    target = _product(w, a.T) - price  # (r, n)
    gram = w @ w.T
    nonnegative_sweep(zt, target, gram, np.diag(gram))


def _moments(zt: np.ndarray, ta: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZᵀTA (r, D) and ZᵀTZ (r, r): all the atoms' update and the objective need of the n rows."""
    return _product(zt, ta), (zt * t) @ zt.T


def _update_atoms(za: np.ndarray, zz: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One HALS sweep over the atoms on the unit sphere, from the codes' moments (rows weighted)."""
    w = w.copy()
    for j in range(w.shape[0]):
        r = za[j] - zz[j] @ w + zz[j, j] * w[j]
        norm = float(np.linalg.norm(r))
        if norm > 0:
            w[j] = r / norm
    return w


def _objective(aa: float, za: np.ndarray, zz: np.ndarray, w: np.ndarray, zt: np.ndarray, t: np.ndarray,
               price: float) -> float:
    """F = ‖T^½(A − ZW)‖² + 2λ Σ t_i z_ij, from r × D moments (no n × D residual), clipped at 0."""
    fit = max(aa - 2 * float((za * w).sum()) + float((zz * (w @ w.T)).sum()), 0.0)
    return fit + 2 * price * float(t @ zt.sum(axis=0))
