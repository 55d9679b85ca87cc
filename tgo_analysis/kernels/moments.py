"""Per-chunk count, mean and centred co-moment, and their pairwise merge (pure numpy, float64).

This is the chunk/combine step of the covariance reduction: each sample chunk gives a
``Moments`` per token; two are merged exactly with the update of Chan, Golub and LeVeque,
so the result does not depend on how samples were chunked and never forms raw float32 sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Sample count, per-token mean (..., D) and centred co-moment sum (..., D, D), float64."""

    count: int
    mean: np.ndarray
    comoment: np.ndarray


def chunk_moments(x: np.ndarray) -> Moments:
    """Moments of one chunk x (n, T, D): per token, centre in float64, then one GEMM.

    Token by token, so each token's centred (n, D) matrix and (D, D) product stay in cache:
    measured 1.2x faster than centring the whole (T, n, D) chunk first for T=227, D=384.
    """
    x = np.asarray(x)
    n, n_tokens, n_features = x.shape
    mean = x.mean(axis=0, dtype=np.float64)  # (T, D)
    comoment = np.empty((n_tokens, n_features, n_features))
    centred = np.empty((n, n_features))
    for t in range(n_tokens):
        np.subtract(x[:, t], mean[t], out=centred)
        np.matmul(centred.T, centred, out=comoment[t])
    return Moments(int(n), mean, comoment)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan-Golub-LeVeque: M = Ma + Mb + δδᵀ · na·nb/n with δ = mean_b - mean_a.

    Only arithmetic and ``[..., None]`` indexing: numpy arrays and torch tensors (the device
    path, in-flight mode) merge through this one function.
    """
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / n)
    outer = delta[..., :, None] * delta[..., None, :]
    comoment = a.comoment + b.comoment + outer * (a.count * b.count / n)
    return Moments(n, mean, comoment)


def merge_moments_into(a: Moments, b: Moments, scratch: np.ndarray | None = None) -> Moments:
    """The same merge, reusing a's arrays for the result (a is consumed).

    Inside a reduction tree every partial result feeds exactly one merge, so its buffers can
    be reused; token by token, the rank-one correction lives in one cached (D, D) scratch
    instead of a (T, D, D) temporary (the merge is memory-bound: one pass instead of five).
    """
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    n = a.count + b.count
    delta = (b.mean - a.mean).reshape(-1, a.mean.shape[-1])
    mean = a.mean + delta.reshape(a.mean.shape) * (b.count / n)
    scale = a.count * b.count / n
    target = a.comoment.reshape(-1, *a.comoment.shape[-2:])
    source = b.comoment.reshape(target.shape)
    scratch = np.empty(target.shape[1:]) if scratch is None else scratch
    # every allocation is above: a retried task never sees a half-updated input
    for t in range(target.shape[0]):
        np.multiply.outer(delta[t] * scale, delta[t], out=scratch)
        scratch += source[t]
        target[t] += scratch
    return Moments(n, mean, a.comoment)


def fold_moments(acc: Moments | None, x: np.ndarray) -> Moments:
    """Chan's merge of chunk x (n, T, D) into ``acc`` in place, without a (T, D, D) chunk partial.

    Per token, M += Xcᵀ Xc + δδᵀ · na·nb/n is one in-place BLAS rank-k update (dsyrk) of
    [Xc; √(na·nb/n) δ], so a fold over sample blocks keeps one live accumulator (the memory
    budget counts on it) and touches it once per block. dsyrk writes the lower triangle only:
    call ``symmetrize`` before using the co-moment as a full matrix.
    """
    from scipy.linalg.blas import dsyrk

    if acc is None or acc.count == 0:
        return chunk_moments(x)
    x = np.asarray(x)
    n, n_tokens, n_features = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    total = acc.count + int(n)
    scale = np.sqrt(acc.count * n / total)
    stacked = np.empty((n_features, n + 1), order="C")  # transposed [Xc; √s δ], Fortran-ordered for BLAS
    for t in range(n_tokens):
        np.subtract(x[:, t], mean[t], out=stacked[:, :n].T)
        np.multiply(mean[t] - acc.mean[t], scale, out=stacked[:, n])
        # acc.comoment[t].T is Fortran-contiguous: dsyrk updates it in place (upper of Mᵀ = lower of M)
        dsyrk(1.0, stacked.T, beta=1.0, c=acc.comoment[t].T, trans=1, lower=0, overwrite_c=1)
    delta = mean - acc.mean
    return Moments(total, acc.mean + delta * (n / total), acc.comoment)


def symmetrize(m: Moments) -> Moments:
    """Copy each co-moment's lower triangle onto its upper one, in place (after ``fold_moments``)."""
    upper = np.triu_indices(m.comoment.shape[-1], k=1)
    for t in range(m.comoment.reshape(-1, *m.comoment.shape[-2:]).shape[0]):
        matrix = m.comoment.reshape(-1, *m.comoment.shape[-2:])[t]
        matrix[upper] = matrix.T[upper]
    return m


def covariance(m: Moments) -> np.ndarray:
    """Unbiased covariance C = M / (N - 1)."""
    return m.comoment / (m.count - 1)


def unit_vector_sum(x: np.ndarray) -> np.ndarray:
    """Σ_i x_i/‖x_i‖ per token for x (n, T, D), un-centred; zero vectors contribute nothing."""
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        units = np.where(norms > 0, x64 / norms, 0.0)
    return units.sum(axis=0)
