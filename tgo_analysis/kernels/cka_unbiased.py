"""Debiased linear CKA (SPEC 8): the unbiased HSIC estimator of Song et al. (2012), exact over all
N samples from streamed moments, pure numpy, float64.

With K = XXᵀ and L = YYᵀ whose diagonals are zeroed (K̃, L̃), the unbiased estimator is

    HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3)),

and debiased CKA = HSIC₁(X, Y) / √(HSIC₁(X, X) HSIC₁(Y, Y)) (Nguyen, Raghu & Kornblith 2021).
HSIC₁ of linear kernels is invariant to shifting X or Y (each term a_i + a_j + c a shift adds to
K cancels in its U-statistic), so take x_i, y_i centred over all n samples: then X1 = 0 and, with
q_i = ‖x_i‖², r_i = ‖y_i‖²,

    tr(K̃L̃) = ‖XᵀY‖²_F - Σ q_i r_i,   1ᵀK̃1 = -Σ q_i,   1ᵀK̃L̃1 = Σ q_i r_i,

    HSIC₁ = [‖XᵀY‖²_F - n/(n-2) Σ q_i r_i + (Σ q_i)(Σ r_i) / ((n-1)(n-2))] / (n(n-3)).

‖XᵀY‖²_F comes from the centred co-moment the biased CKA already folds; Σ q_i = tr(XᵀX). Only
Σ q_i r_i needs more: it depends on the final mean, so each block adds sums about a fixed shift
k (the first block's mean, close to the final one, so nothing cancels): with d_i = z_i - k,
Σ d_i, Σ q̂_i q̂_i' (q̂ the squared norm of a side of d_i), Σ q̂_i d_i (the Σ x‖y‖² terms) and
Σ q̂_i. ``centred_norm_products`` moves them to the final mean exactly. For several sides
(layers) concatenated into one vector z, every pair comes from the same sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NormSums:
    """Sums over samples of the concatenated vectors z (``sides`` blocks of equal width) about ``shift``.

    ``count`` n, ``total`` Σ d (W,), ``square`` Σ q̂ (S,), ``cross`` Σ q̂ q̂ᵀ (S, S), ``third``
    Σ q̂ ⊗ d (S, W); d = z - shift, q̂_s = ‖d_s‖² the squared norm of side s.
    """

    shift: np.ndarray
    count: int
    total: np.ndarray
    square: np.ndarray
    cross: np.ndarray
    third: np.ndarray


def side_norms(d: np.ndarray, sides: int) -> np.ndarray:
    """(n, S) squared norm of each side's block of the rows d (n, W)."""
    return np.einsum("nsd,nsd->ns", *(d.reshape(d.shape[0], sides, -1),) * 2)


def fold_norm_sums(acc: NormSums | None, z: np.ndarray, sides: int) -> NormSums:
    """Add the rows z (n, W) to ``acc`` (in place); the first block fixes the shift (its mean)."""
    z = np.asarray(z, dtype=np.float64)
    if acc is None:
        width = z.shape[1]
        acc = NormSums(z.mean(axis=0), 0, np.zeros(width), np.zeros(sides), np.zeros((sides, sides)),
                       np.zeros((sides, width)))
    d = z - acc.shift
    q = side_norms(d, sides)
    acc.count += z.shape[0]
    acc.total += d.sum(axis=0)
    acc.square += q.sum(axis=0)
    acc.cross += q.T @ q
    acc.third += q.T @ d
    return acc


def centred_norm_products(sums: NormSums, comoment: np.ndarray) -> np.ndarray:
    """(S, S) Σ_i ‖x_i,s - m_s‖² ‖x_i,t - m_t‖² about the final mean m, from ``sums`` and the full,
    symmetric centred co-moment (W, W) of the same samples.

    With δ = Σd / n (the mean minus the shift) and c_s = ‖δ_s‖², each centred squared norm is
    q̂_s - 2δ_sᵀd_s + c_s, and the sum of products expands to
    Σq̂_s q̂_t - 2δ_tᵀ(Σq̂_s d_t) - 2δ_sᵀ(Σq̂_t d_s) + 4 δ_sᵀ M_st δ_t + c_t Σq̂_s + c_s Σq̂_t + n c_s c_t.
    """
    n, sides = sums.count, sums.square.size
    delta = (sums.total / n).reshape(sides, -1)
    c = (delta * delta).sum(axis=1)
    third = np.einsum("std,td->st", sums.third.reshape(sides, sides, -1), delta)  # δ_tᵀ Σ q̂_s d_t
    blocks = comoment.reshape(sides, delta.shape[1], sides, delta.shape[1])
    middle = np.einsum("sd,sdte,te->st", delta, blocks, delta)
    return (sums.cross - 2 * third - 2 * third.T + 4 * middle + np.outer(sums.square, c) + np.outer(c, sums.square)
            + n * np.outer(c, c))


def unbiased_hsic(cross_norm: np.ndarray, norm_products: np.ndarray, traces: np.ndarray, n: int) -> np.ndarray:
    """HSIC₁ of every pair from ‖X_sᵀX_t‖²_F (S, S), Σ q_s q_t (S, S) and Σ q_s = tr(X_sᵀX_s) (S,),
    all of vectors centred over the n samples; NaN for n < 4."""
    if n < 4:
        return np.full(cross_norm.shape, np.nan)
    return (cross_norm - n / (n - 2) * norm_products + np.outer(traces, traces) / ((n - 1) * (n - 2))) / (n * (n - 3))


def debiased_cka(hsic: np.ndarray) -> np.ndarray:
    """HSIC₁(s, t) / √(HSIC₁(s, s) HSIC₁(t, t)); NaN where a side's HSIC₁ is not positive."""
    diagonal = np.diagonal(hsic)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(np.where(diagonal > 0, diagonal, np.nan))
        return hsic / np.outer(scale, scale)


def debiased_block_cka(comoment: np.ndarray, sums: NormSums) -> np.ndarray:
    """(S, S) debiased CKA of every pair of sides from the full centred co-moment (W, W) and ``sums``."""
    sides = sums.square.size
    width = comoment.shape[0] // sides
    blocks = comoment.reshape(sides, width, sides, width)
    cross_norm = np.einsum("sdte,sdte->st", blocks, blocks)
    traces = np.einsum("sdsd->s", blocks)
    hsic = unbiased_hsic(cross_norm, centred_norm_products(sums, comoment), traces, sums.count)
    return debiased_cka(hsic)


def gram_unbiased_hsic(kx: np.ndarray, ky: np.ndarray) -> float:
    """HSIC₁ of two Gram matrices (n, n), their diagonals zeroed here (copies), the formula as written."""
    n = kx.shape[0]
    if n < 4:
        return float("nan")
    kx, ky = kx.copy(), ky.copy()
    np.fill_diagonal(kx, 0.0)
    np.fill_diagonal(ky, 0.0)
    sx, sy = kx.sum(axis=1), ky.sum(axis=1)
    value = np.vdot(kx, ky) + sx.sum() * sy.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(sx @ sy)
    return float(value / (n * (n - 3)))


def gram_debiased_table(centred: dict[int, np.ndarray]) -> dict[tuple[int, int], float]:
    """Debiased CKA of every pair (a <= b) of sides from their centred Gram matrices (centring is exact
    for HSIC₁ and keeps the float64 sums small)."""
    keys = sorted(centred)
    hsic = {(a, b): gram_unbiased_hsic(centred[a], centred[b]) for a in keys for b in keys if a <= b}
    out = {}
    for (a, b), value in hsic.items():
        scale = hsic[a, a] * hsic[b, b]
        out[a, b] = value / np.sqrt(scale) if hsic[a, a] > 0 and hsic[b, b] > 0 else float("nan")
    return out
