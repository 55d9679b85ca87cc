"""The randomized spectrum of a large matrix (Halko, Martinsson & Tropp 2011), as per-block products.

Each step is one read of the rows of the centred matrix A (N x F): ``project_rows`` gives the rows of
Y = A Z for a sample block, ``project_back`` a block's share of Aᵀ Q (summed over blocks). The
engine runs them as declared reads of the unit (``statistics/all_tokens.py``): Y = A Ω, then per power
iteration Z = Aᵀ qr(Y), Y = A Z, and at last Z = Aᵀ qr(Y), whose singular values are A's top ones.
``randomized_eigenvalues`` composes the same steps on an in-memory matrix (the reference in tests).
"""

from __future__ import annotations

import numpy as np

OVERSAMPLE = 10  # columns beyond k in the test matrix (dask's svd_compressed default)
MIN_POWER_ITERS = 4  # without power iterations truncated spectra decay too fast and inflate alpha


def sketch_width(k: int, n_samples: int, n_features: int) -> int:
    """Columns of the test matrix: k plus the oversampling, at most min(N, F)."""
    return int(min(k + OVERSAMPLE, n_samples, n_features))


def gaussian_sketch(n_features: int, width: int, seed: int) -> np.ndarray:
    """Ω (F x width), standard normal from ``seed``."""
    return np.random.default_rng(seed).standard_normal((n_features, width))


def project_rows(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A block's rows of A Z (x: the block's centred rows, float64)."""
    return x @ z


def project_back(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """A block's share of Aᵀ Q (q: the block's rows of Q); the shares of all blocks add."""
    return x.T @ q


def orthonormal(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of Y's columns (thin QR)."""
    return np.linalg.qr(y)[0]


def top_eigenvalues(z: np.ndarray, k: int, n_samples: int) -> np.ndarray:
    """The top k covariance eigenvalues from Z = Aᵀ Q (its singular values are those of Qᵀ A), descending."""
    s = np.linalg.svd(z, compute_uv=False)
    return np.sort(s**2 / (n_samples - 1))[::-1][:k]


def randomized_eigenvalues(x: np.ndarray, k: int, n_power_iter: int = MIN_POWER_ITERS, seed: int = 0) -> np.ndarray:
    """Top-k covariance eigenvalues of x (N, F), centred, by the steps above on one block."""
    if n_power_iter < MIN_POWER_ITERS:
        raise ValueError("randomized spectra need at least 4 power iterations")
    a = np.asarray(x, dtype=np.float64)
    a = a - a.mean(axis=0)
    n, f = a.shape
    y = project_rows(a, gaussian_sketch(f, sketch_width(k, n, f), seed))
    for _ in range(n_power_iter):
        y = project_rows(a, project_back(a, orthonormal(y)))
    return top_eigenvalues(project_back(a, orthonormal(y)), int(min(k, n, f)), n)
