"""TwoNN intrinsic dimension (Facco, d'Errico, Rodriguez & Laio 2017).

mu_i = r2/r1 (distances to the 2nd and 1st nearest neighbours); points with r1 = 0
(duplicates) are dropped; the largest ``discard_fraction`` of mu is discarded; the dimension
is the slope through the origin of -log(1 - F(mu)) on log(mu), F(mu_(i)) = i / N over the kept
points with N the count before discarding (the convention of scikit-dimension's TwoNN).
Neighbours come from a KD/ball tree (scikit-learn), never an N x N distance matrix.
"""

from __future__ import annotations

import numpy as np


def nearest_two(x: np.ndarray, algorithm: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Distances to each point's first and second nearest other point. ``algorithm="ball_tree"``
    computes every distance from differences (exact zeros for duplicates); "auto" may pick the
    brute-force Gram trick, whose rounding leaves duplicates about 1e-8 apart."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=3, algorithm=algorithm).fit(x).kneighbors(x)
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


MICROSCOPE_FRACTION = 5  # LLM-Microscope's reduction_factor: the fit uses the lowest 1/5 of the ratios
MICROSCOPE_EPS = 1e-8


def microscope_dimension(x: np.ndarray, reduction_factor: int = MICROSCOPE_FRACTION) -> float:
    """TwoNN as LLM-Microscope's ``intrinsic_dimension`` computes it (Razzhigaev et al. 2024).

    The points are centred and scaled to unit mean norm (so its 1e-8 duplicate threshold
    means the same); a point whose nearest neighbour is closer than 1e-8 gets mu = -1 and,
    with every other mu <= 1 + 1e-8, is removed after sorting; F(mu_(i)) = (u + i) / (u + n)
    with u the removed count and n the kept one, and the slope through the origin of
    -log(1 - F) on log mu is fitted on the lowest min(n // 5, n - 1) ratios only. Neighbours
    come from a KD/ball tree, not its O(N²) loop; NaN with fewer than two ratios to fit.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if x64.shape[0] < 4:
        return float("nan")
    x64 = x64 - x64.mean(axis=0, keepdims=True)
    scale = np.sqrt((x64 * x64).sum(axis=1)).mean()
    if not scale > 0:
        return float("nan")
    r1, r2 = nearest_two(x64 / scale, "ball_tree")  # its 1e-8 duplicate test needs exact zeros
    bad = r1 < MICROSCOPE_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(bad, -1.0, r2 / np.where(bad, 1.0, r1))
    mu = np.sort(mu)
    removed = int((mu <= 1 + MICROSCOPE_EPS).sum())
    mu = mu[removed:]
    n = mu.size
    used = min(n // reduction_factor, n - 1)
    if used < 2:
        return float("nan")
    f = np.arange(1 + removed, n + 1 + removed)[:used] / (n + removed)
    xs, ys = np.log(mu[:used]), -np.log(1 - f)
    return float(np.dot(xs, ys) / np.dot(xs, xs))
