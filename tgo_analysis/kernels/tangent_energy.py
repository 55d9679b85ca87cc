"""Tangent vs control subspaces against the gradient second moment (pure numpy, float64).

Every tangent statistic of SPEC section 5 is a function of ONE streamed moment per
(checkpoint, layer[, frequency bucket]): the un-centred gradient second moment G = Σ g gᵀ over
valid positions. With Q (D × k) orthonormal, Σ‖Qᵀg‖² = trace(QᵀGQ) and Σ‖g‖² = trace(G), so

- energy E(Q) = trace(QᵀGQ) / trace(G)  (tangent_energy with Q_T, control_energy with each Q_N);
- tangent_enrichment = E(Q_T) / mean over draws of E(Q_N);
- alignment(Q) = ‖QᵀU_k‖²_F / k, U_k the top-k eigenvectors of G.

An isotropic gradient gives E ≈ k/D for any Q, so enrichment ≈ 1 and alignment ≈ k/D
(``isotropic_expectation``), the yardstick recorded beside each result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ROWS = 4096  # gradient rows cast to float64 per GEMM in ``second_moment`` (8 MB of scratch at D = 256)


@dataclass(frozen=True)
class TangentStats:
    """Tangent vs control numbers for one G, or for a stack of them (leading dims of G)."""

    tangent_energy: np.ndarray  # (...)
    control_energy: np.ndarray  # (..., draws)
    tangent_enrichment: np.ndarray  # (...)
    tangent_alignment: np.ndarray  # (...)
    control_alignment: np.ndarray  # (...), mean over draws
    isotropic: float  # k / D


def tangent_basis(dictionary: np.ndarray) -> np.ndarray:
    """Q_T (D, k): orthonormal basis of the row space of W (r, D); k < r only if W is rank-deficient."""
    w = np.asarray(dictionary, dtype=np.float64)
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    keep = s > (s[0] if s.size else 0.0) * max(w.shape) * np.finfo(np.float64).eps
    if not keep.any():
        raise ValueError("the semi-NMF dictionary is all zeros (the activations are zero); "
                       "no tangent subspace exists for this layer")
    return vt[keep].T


def control_bases(q_tangent: np.ndarray, draws: int, seed: int | Sequence[int]) -> np.ndarray:
    """(draws, D, k): Haar-uniform orthonormal k-frames in the orthogonal complement of Q_T.

    A Gaussian matrix projected onto the complement is isotropic there; its QR factor with a
    positive-diagonal R is then uniform on the complement's Stiefel manifold (Mezzadri 2007).
    """
    q = np.asarray(q_tangent, dtype=np.float64)
    n_features, k = q.shape
    if 2 * k > n_features:
        raise ValueError(f"control draws need k = {k} directions outside a {k}-dim tangent subspace of a "
                         f"{n_features}-dim space; use a rank of at most {n_features // 2}")
    rng = np.random.default_rng(seed)
    out = np.empty((draws, n_features, k))
    for d in range(draws):
        x = rng.standard_normal((n_features, k))
        for _ in range(2):  # twice is enough to be orthogonal to Q_T to rounding
            x -= q @ (q.T @ x)
        basis, r = np.linalg.qr(x)
        out[d] = basis * np.sign(np.diag(r))
    return out


def isotropic_expectation(k: int, n_features: int) -> float:
    """What energy and alignment are for isotropic gradients: k / D."""
    return k / n_features


def energy(second_moment: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """trace(QᵀGQ) / trace(G) for G (..., D, D) and Q (D, k) or (draws, D, k) -> (...[, draws])."""
    g = np.asarray(second_moment, dtype=np.float64)
    total = np.trace(g, axis1=-2, axis2=-1)
    if basis.ndim == 2:
        captured = np.einsum("...ij,ik,jk->...", g, basis, basis)
    else:
        captured = np.einsum("...ij,dik,djk->...d", g, basis, basis)
        total = total[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, captured / np.where(total > 0, total, 1.0), np.nan)


def top_eigenvectors(second_moment: np.ndarray, k: int) -> np.ndarray:
    """U_k (..., D, k): eigenvectors of the k largest eigenvalues of symmetric G (..., D, D)."""
    _, vectors = np.linalg.eigh(np.asarray(second_moment, dtype=np.float64))
    return vectors[..., ::-1][..., :k]


def alignment(basis: np.ndarray, top: np.ndarray) -> np.ndarray:
    """‖QᵀU‖²_F / k for Q (D, k) or (draws, D, k) and U (..., D, k) -> (...[, draws])."""
    k = top.shape[-1]
    if basis.ndim == 2:
        overlap = np.einsum("ik,...il->...kl", basis, top)
    else:
        overlap = np.einsum("dik,...il->...dkl", basis, top)
    return (overlap**2).sum(axis=(-2, -1)) / k


def tangent_statistics(second_moment: np.ndarray, q_tangent: np.ndarray,
                       q_controls: np.ndarray) -> TangentStats:
    """Every tangent/control number from G (..., D, D); NaN where G is zero (no gradient)."""
    g = np.asarray(second_moment, dtype=np.float64)
    k = q_tangent.shape[1]
    e_t = energy(g, q_tangent)
    e_n = energy(g, q_controls)
    with np.errstate(invalid="ignore", divide="ignore"):
        enrichment = e_t / e_n.mean(axis=-1)
    top = top_eigenvectors(g, k)
    valid = np.trace(g, axis1=-2, axis2=-1) > 0
    a_t = np.where(valid, alignment(q_tangent, top), np.nan)
    a_n = np.where(valid, alignment(q_controls, top).mean(axis=-1), np.nan)
    return TangentStats(e_t, e_n, enrichment, a_t, a_n, isotropic_expectation(k, g.shape[-1]))


def second_moment(gradients: np.ndarray, valid: np.ndarray | None = None,
                  buckets: np.ndarray | None = None, n_buckets: int = 0) -> tuple[np.ndarray, int]:
    """Chunk step: G = Σ g gᵀ (float64) over valid positions of gradients (..., D).

    With ``buckets`` (same leading shape, -1 = no bucket) returns (n_buckets + 1, D, D): one G per
    bucket, the last for positions in no bucket, so the layer's G is their sum (one GEMM in all).
    Rows are cast to float64 ``ROWS`` at a time, which bounds the scratch whatever the block.
    Returns the moment and the number of positions that entered.
    """
    g = np.asarray(gradients)
    n_features = g.shape[-1]
    flat = g.reshape(-1, n_features)
    keep = np.ones(flat.shape[0], bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    ids = np.zeros(flat.shape[0], np.int64) if buckets is None else np.asarray(buckets).reshape(-1)
    slots = 1 if buckets is None else n_buckets + 1
    ids = np.where((ids >= 0) & (ids < slots - 1), ids, slots - 1) if buckets is not None else ids
    out = np.zeros((slots, n_features, n_features))
    for lo in range(0, flat.shape[0], ROWS):
        part = slice(lo, lo + ROWS)
        for b in np.unique(ids[part][keep[part]]):
            rows = flat[part][keep[part] & (ids[part] == b)].astype(np.float64)
            out[b] += rows.T @ rows
    return (out[0] if buckets is None else out), int(keep.sum())


def gradient_spectrum(second_moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(μ descending (..., D), eigenvectors (..., D, D) in that order) of symmetric G."""
    values, vectors = np.linalg.eigh(np.asarray(second_moment, dtype=np.float64))
    return np.clip(values[..., ::-1], 0.0, None), vectors[..., ::-1]


def optimal_energy(second_moment: np.ndarray, k: int) -> np.ndarray:
    """Σ_{i≤k} μ_i / Σμ: the most energy any k-dim subspace captures (Ky Fan); NaN where G = 0."""
    mu, _ = gradient_spectrum(second_moment)
    total = mu.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mu[..., :k].sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)


def weighted_alignment(basis: np.ndarray, second_moment: np.ndarray, k: int) -> np.ndarray:
    """Σ_{i≤k} μ_i ‖Qᵀu_i‖² / Σ_{i≤k} μ_i: alignment that near-degenerate top eigenvalues of G
    cannot swing (a direction barely inside the top k weighs as little as its μ)."""
    mu, vectors = gradient_spectrum(second_moment)
    inside = (np.einsum("ik,...il->...kl", basis, vectors[..., :k]) ** 2).sum(axis=-2)  # ‖Qᵀu_l‖²
    top = mu[..., :k].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, (mu[..., :k] * inside).sum(axis=-1) / np.where(top > 0, top, 1.0), np.nan)


def pca_basis(points: np.ndarray, k: int, centred: bool = False) -> np.ndarray:
    """Q_P (D, k): the top-k right singular vectors of points (n, D), float64: the "high variance"
    subspace at the tangent rank. Un-centred by default, like the semi-NMF it is compared with (a
    centred Q_P against an un-centred proxy credits the proxy with the mean direction, so gradients
    that share only the activations' second moment would read "above PCA"); ``centred`` gives the
    top-k eigenvectors of the centred covariance (``pca_energy_centred``). A bootstrap replicate's
    weighted Q_P: ``pca_bases``."""
    a = np.asarray(points, dtype=np.float64)
    if centred:
        a = a - a.mean(axis=0)
    return top_eigenvectors(a.T @ a, k).copy()


GROUP_MOMENT_BYTES = 64 << 20  # per-group second moments held at once by ``pca_bases`` (else one pass per column)


def pca_bases(points: np.ndarray, groups: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """(B, D, k): ``pca_basis`` of ``points`` (n, D) weighted by each column of ``weights`` (m, B), where
    row i takes the weight of its group ``groups[i]`` in [0, m) (a bootstrap replicate weighs samples).

    The weighted moments Σ_i w_g(i)b a_i a_iᵀ are equal sums of the groups' own moments: with a few
    groups (samples of many positions) one pass over the points and one (B, m) x (m, D²) product give
    every column's moment, where a pass per column would cost B passes; otherwise one pass per column."""
    a = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ids = np.asarray(groups, dtype=np.int64)
    (m, columns), d = w.shape, a.shape[1]
    if m < a.shape[0] and m * d * d * 8 <= GROUP_MOMENT_BYTES:
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(m + 1))
        moments = np.zeros((m, d, d))
        for j in np.flatnonzero(np.diff(bounds)):
            rows = a[order[bounds[j]:bounds[j + 1]]]
            moments[j] = rows.T @ rows
        stack = (w.T @ moments.reshape(m, d * d)).reshape(columns, d, d)
    else:
        stack = np.stack([(a * w[ids, b][:, None]).T @ a for b in range(columns)])
    return top_eigenvectors(stack, k).copy()


def subspace_stability(first: np.ndarray, second: np.ndarray) -> float:
    """Mean cos² of the principal angles between two orthonormal frames (D, k1), (D, k2):
    1 for the same subspace, about max(k1, k2) / D for unrelated ones."""
    cosines = np.linalg.svd(np.asarray(first).T @ np.asarray(second), compute_uv=False)
    return float(np.mean(np.clip(cosines, 0.0, 1.0) ** 2))
