"""Eigenvalues: per token from co-moments; for all tokens concatenated from the Gram matrix or
randomized SVD (Halko, Martinsson & Tropp) when N is too large to decompose."""

from __future__ import annotations

import numpy as np


def covariance_eigenvalues(cov: np.ndarray) -> np.ndarray:
    """Batched eigvalsh of (..., D, D): descending, negatives (rounding) clipped to 0."""
    eigs = np.linalg.eigvalsh(cov)[..., ::-1]
    return np.clip(eigs, 0.0, None)


def gram_eigenvalues(x: np.ndarray) -> np.ndarray:
    """Covariance eigenvalues of x (N, F) via the N x N Gram of the centred rows.

    The nonzero eigenvalues of XcᵀXc and XcXcᵀ coincide, so for F >> N this is exact and
    cheap. Returns min(N, F) values, descending, divided by N - 1.
    """
    x64 = np.asarray(x, dtype=np.float64)
    centred = x64 - x64.mean(axis=0)
    gram = centred @ centred.T
    eigs = covariance_eigenvalues(gram / (x64.shape[0] - 1))
    return eigs[: min(x64.shape)]


def randomized_eigenvalues(x, k: int, n_power_iter: int = 4, seed: int = 0) -> np.ndarray:
    """Top-k covariance eigenvalues of a dask array x (N, F) with dask's svd_compressed.

    Centred on the fly; at least 4 power iterations (without them truncated spectra decay too
    fast and inflate alpha).
    """
    import dask.array as da

    if n_power_iter < 4:
        raise ValueError("randomized spectra need at least 4 power iterations")
    x = da.asarray(x).astype(np.float64)
    centred = x - x.mean(axis=0)
    k = int(min(k, *x.shape))
    _, s, _ = da.linalg.svd_compressed(
        centred, k=k, n_power_iter=n_power_iter, seed=seed, compute=False
    )
    s = np.asarray(s.compute())
    return np.sort(s**2 / (x.shape[0] - 1))[::-1]


def exact_trace(comoment_diagonal_sum: np.ndarray | float, count: int) -> float:
    """Σλ of the covariance exactly: the streamed centred sum of squares / (N - 1).

    Pass the sum of the co-moment diagonals (over every token for the all-tokens spectrum,
    e.g. ``np.trace(m.comoment, axis1=-2, axis2=-1).sum()`` of a merged ``Moments``); a
    truncated randomized spectrum misses the tail, so its own sum would understate Σλ.
    """
    return float(np.sum(comoment_diagonal_sum)) / (count - 1)
