"""Alpha-trajectory clusters: k-means of each token's alpha across layers, mapped to the patch grid."""

from __future__ import annotations

import numpy as np


def cluster_trajectories(trajectories: np.ndarray, n_clusters: int, *, use_umap: bool = False,
                         seed: int = 0) -> np.ndarray:
    """alpha trajectories (token, layer) -> cluster id per token; -1 for a trajectory with NaN.

    Layers where no token has an alpha (e.g. a float16 layer whose spectrum is below the storage
    noise floor, SPEC 8) are left out of every trajectory rather than voiding them all.

    Trajectories are standardised per layer; ids are ordered by the cluster's mean alpha, so
    cluster 0 always has the lowest mean alpha and ids are stable across runs. ``use_umap``
    needs umap-learn (ImportError without it: the caller says how to install it).
    """
    from sklearn.cluster import KMeans

    traj = np.asarray(trajectories, dtype=np.float64)
    traj = traj[:, np.isfinite(traj).any(axis=0)]  # a layer no token resolves (alpha NaN everywhere) says nothing
    valid = np.isfinite(traj).all(axis=1) & (traj.shape[1] > 0)  # no layer left: no trajectory to cluster
    labels = np.full(traj.shape[0], -1, dtype=np.int64)
    k = min(int(n_clusters), int(valid.sum()))
    if k >= 1:
        data = traj[valid]
        spread = data.std(axis=0)
        features = (data - data.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        if use_umap:
            features = _umap(features, seed)
        fitted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features).labels_
        order = np.argsort([data[fitted == c].mean() for c in range(k)])
        labels[valid] = np.argsort(order)[fitted]
    return labels


def _umap(features: np.ndarray, seed: int) -> np.ndarray:
    import umap

    n_neighbors = max(2, min(15, features.shape[0] - 1))
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed).fit_transform(
        features
    )


def clusters_on_grid(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Patch-grid image of cluster ids (prefix tokens, row/col -1, are left out); -1 = no token."""
    patch = (rows >= 0) & (cols >= 0)
    if not patch.any():
        return np.zeros((0, 0), dtype=np.int64)
    grid = np.full((rows[patch].max() + 1, cols[patch].max() + 1), -1, dtype=np.int64)
    grid[rows[patch], cols[patch]] = labels[patch]
    return grid
