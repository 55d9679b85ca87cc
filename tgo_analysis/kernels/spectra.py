"""Eigenvalues: per token from co-moments; for all tokens concatenated from the Gram matrix.

The randomized SVD for an N too large to decompose is ``kernels/randomized.py``: one product per
read of the unit, which the engine runs as the statistic's declared reads."""

from __future__ import annotations

import numpy as np


def covariance_eigenvalues(cov: np.ndarray) -> np.ndarray:
    """Batched eigvalsh of (..., D, D): descending, negatives (rounding) clipped to 0."""
    eigs = np.linalg.eigvalsh(cov)[..., ::-1]
    return np.clip(eigs, 0.0, None)


def gram_spectrum(gram: np.ndarray, n: int) -> np.ndarray:
    """Covariance eigenvalues from the un-centred N x N Gram X Xᵀ, centred on both sides.

    The nonzero eigenvalues of XcᵀXc and XcXcᵀ coincide, so for F >> N this is exact and
    cheap; the Gram is additive over feature (and token) ranges, so it can be streamed.
    """
    row = gram.mean(axis=1, keepdims=True)
    centred = gram - row - row.T + gram.mean()
    return covariance_eigenvalues(centred / (n - 1))


def gram_eigenvalues(x: np.ndarray) -> np.ndarray:
    """Covariance eigenvalues of x (N, F) via its Gram: min(N, F) values, descending, / (N - 1)."""
    x64 = np.asarray(x, dtype=np.float64)
    return gram_spectrum(x64 @ x64.T, x64.shape[0])[: min(x64.shape)]


def exact_trace(comoment_diagonal_sum: np.ndarray | float, count: int) -> np.ndarray:
    """Σλ of covariances exactly: streamed centred sums of squares / (N - 1), element-wise.

    Per token pass the co-moment traces; for the all-tokens spectrum their sum. A truncated
    randomized spectrum misses the tail, so its own sum would understate Σλ.
    """
    return np.asarray(comoment_diagonal_sum, dtype=np.float64) / (count - 1)
