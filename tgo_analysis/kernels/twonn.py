"""TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez & Laio 2017).

mu_i = r2/r1 (distances to the 2nd and 1st nearest neighbours); points with r1 = 0
(duplicates) are dropped; the largest ``discard_fraction`` of mu is discarded; the dimension
is the slope through the origin of -log(1 - F(mu)) on log(mu), F(mu_(i)) = i / N over the kept
points with N the count before discarding (the convention of scikit-dimension's TwoNN).
Neighbours come from a KD/ball tree (scikit-learn), never an N x N distance matrix.
"""

from __future__ import annotations

import numpy as np


def nearest_two(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=3).fit(x).kneighbors(x)
    return dist[:, 1], dist[:, 2]


def twonn_dimension(x: np.ndarray, discard_fraction: float = 0.1) -> float:
    """TwoNN estimate for x (N, F) of un-centred per-sample vectors; NaN when < 3 usable points."""
    x64 = np.asarray(x, dtype=np.float64)
    if x64.shape[0] < 4:
        return float("nan")
    r1, r2 = nearest_two(x64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = r2 / r1
    mu = np.sort(mu[np.isfinite(mu)])
    n = mu.size
    keep = int(n * (1 - discard_fraction))
    if keep < 2:
        return float("nan")
    mu = mu[:keep]
    f = np.arange(1, keep + 1) / n
    xs, ys = np.log(mu), -np.log(1 - f)
    return float(np.dot(xs, ys) / np.dot(xs, xs))


def subsample_indices(n: int, max_samples: int, seed: int = 0) -> np.ndarray:
    """A sorted seeded subset of at most max_samples indices out of n."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
