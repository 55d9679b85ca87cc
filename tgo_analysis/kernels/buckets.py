"""Geometry by token frequency: log-spaced buckets of ``vocab_count`` (pure numpy, float64).

"Revisiting Anisotropy in Language Transformers" finds the strongest effects on frequent
tokens, and decoders put rare tokens far from the centroid (Spearman ρ near -0.5). Every
valid position falls in the bucket of its token id's count. Per bucket, streamed exactly:
the co-moments (top-1 share, effective rank of the bucket's pooled covariance) and Σ‖x‖
(mean norm). The mean distance to the layer's pooled mean needs that mean first; rather than a
second pass over the store, it is measured on the seeded bottom-k subsample of positions
(``tgo_analysis.kernels.pooling.sample_points``) against the exact pooled mean, and so is Spearman ρ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis.kernels.metrics import DEFAULT_FIT_RANGE, spectral_metrics
from tgo_analysis.kernels.moments import Moments, covariance, merge_moments
from tgo_analysis.kernels.pooling import (
    PointSample,
    merge_point_samples,
    point_moments,
    row_slices,
    sample_points,
)
from tgo_analysis.kernels.spectra import covariance_eigenvalues

DEFAULT_BUCKETS = 10
DEFAULT_DISTANCE_POINTS = 16384


def frequency_edges(vocab_count: np.ndarray, n_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """Integer bucket edges, log-spaced from 1 to max count + 1: bucket b holds counts in
    [edges[b], edges[b+1]). Edges that round to the same integer merge, so small corpora get
    fewer buckets than asked."""
    counts = np.asarray(vocab_count, dtype=np.int64)
    top = int(counts.max()) if counts.size else 0
    if top < 1:
        return np.array([1, 2], dtype=np.int64)
    edges = np.unique(np.round(np.geomspace(1, top + 1, int(n_buckets) + 1)).astype(np.int64))
    edges[-1] = top + 1
    return edges


def position_buckets(token_id: np.ndarray, vocab_count: np.ndarray, edges: np.ndarray,
                     valid: np.ndarray) -> np.ndarray:
    """(n, T) bucket index of each position; -1 for invalid positions, ids < 0 or unseen ids."""
    ids = np.asarray(token_id, dtype=np.int64)
    known = valid & (ids >= 0) & (ids < len(vocab_count))
    counts = np.where(known, np.asarray(vocab_count, dtype=np.int64)[np.where(known, ids, 0)], 0)
    bucket = np.searchsorted(edges, counts, side="right") - 1
    return np.where(known & (counts >= 1), bucket, -1)


@dataclass
class BucketSums:
    """Per bucket: moments of its points (empty without ``moments``), Σ‖x‖ and its point count;
    plus the layer's pooled count and Σx. The point count is kept apart from the moments: the mean
    norm needs it when the spectra come from equal-count subsamples and no moments are kept."""

    moments: list[Moments]
    norm_sum: np.ndarray  # (B,)
    points: np.ndarray  # (B,) positions in each bucket
    count: int  # pooled valid positions (every bucket and unseen ids)
    total: np.ndarray  # (D,) Σx over them


def bucket_sums(x: np.ndarray, buckets: np.ndarray, valid: np.ndarray, n_buckets: int,
                moments: bool = True) -> BucketSums:
    """Chunk step for block x (n, T, D): rows are gathered a few thousand points at a time.
    ``moments=False`` keeps only the norm sums and the pooled Σx (equal-count spectra come
    from ``bucket_samples`` instead)."""
    n, n_tokens, n_features = x.shape
    with_moments = moments
    parts = [point_moments(np.empty((0, n_features))) for _ in range(n_buckets)]
    norm_sum = np.zeros(n_buckets)
    points_in = np.zeros(n_buckets, dtype=np.int64)
    total = np.zeros(n_features)
    for rows in row_slices(n, n_tokens):
        part = np.asarray(x[rows])
        total += part[valid[rows]].sum(axis=0, dtype=np.float64)
        for b in range(n_buckets):
            points = part[buckets[rows] == b]
            if points.shape[0]:
                points_in[b] += points.shape[0]
                if with_moments:
                    parts[b] = merge_moments(parts[b], point_moments(points))
                norm_sum[b] += np.linalg.norm(points.astype(np.float64), axis=1).sum()
    return BucketSums(parts, norm_sum, points_in, int(valid.sum()), total)


def merge_bucket_sums(a: BucketSums, b: BucketSums) -> BucketSums:
    """Combine step (exact, Chan merges per bucket)."""
    moments = [merge_moments(p, q) for p, q in zip(a.moments, b.moments, strict=True)]
    return BucketSums(moments, a.norm_sum + b.norm_sum, a.points + b.points, a.count + b.count, a.total + b.total)


def bucket_metrics(sums: BucketSums, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE) -> dict[str, np.ndarray]:
    """Aggregate step: top1_share, effective_rank, mean norm and point count per bucket."""
    n_features = sums.total.shape[0]
    eigs = np.stack([covariance_eigenvalues(covariance(m)) if m.count > 1 else np.zeros(n_features)
                     for m in sums.moments])
    spectral = spectral_metrics(eigs, n_features, fit_range)
    counts = sums.points
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_norm = np.where(counts > 0, sums.norm_sum / counts, np.nan)
    return {"top1_share": spectral["top1_share"], "effective_rank": spectral["effective_rank"],
            "mean_norm": mean_norm, "count": counts}


def pooled_mean(sums: BucketSums) -> np.ndarray:
    """The layer's pooled mean over every valid position, exact."""
    return sums.total / sums.count if sums.count else np.full(sums.total.shape, np.nan)


def centroid_distances(points: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """‖x - μ‖ per point, float64."""
    return np.linalg.norm(np.asarray(points, dtype=np.float64) - mean, axis=1)


def distance_by_bucket(distances: np.ndarray, buckets: np.ndarray, n_buckets: int) -> np.ndarray:
    """Mean distance per bucket over the points that fall in it (NaN for an empty bucket)."""
    inside = buckets >= 0
    sums = np.bincount(buckets[inside], weights=distances[inside], minlength=n_buckets)
    counts = np.bincount(buckets[inside], minlength=n_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def frequency_spearman(counts: np.ndarray, distances: np.ndarray) -> float:
    """Spearman ρ between log count and distance: Pearson r of average ranks (ties shared).

    log is monotone, so its ranks are those of the counts. NaN with fewer than 3 points or
    a constant side.
    """
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts >= 1
    if keep.sum() < 3:
        return float("nan")
    # imported here, not with the module: scipy.stats costs every `tgo` start-up about a second
    from scipy.stats import rankdata

    a = rankdata(np.log(counts[keep]))
    b = rankdata(distances[keep])
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def bucket_sizes(buckets: np.ndarray, n_buckets: int) -> np.ndarray:
    """(B,) positions per bucket of a (samples, tokens) bucket index array (-1 = none)."""
    inside = np.asarray(buckets)[np.asarray(buckets) >= 0]
    return np.bincount(inside, minlength=n_buckets)[:n_buckets]


def equal_count(sizes: np.ndarray, cap: int, floor: int) -> int:
    """The per-bucket subsample size: the smallest bucket with at least ``floor`` positions, at
    most ``cap``; 0 when no bucket has ``floor`` positions. Buckets below ``floor`` get NaN."""
    usable = np.asarray(sizes)[np.asarray(sizes) >= floor]
    return int(min(cap, usable.min())) if usable.size else 0


def bucket_samples(x: np.ndarray, buckets: np.ndarray, keys: np.ndarray, n_buckets: int, k: int) -> list[PointSample]:
    """Chunk step: per bucket, the k positions of block x (n, T, D) with the smallest keys
    (``pooling.position_keys``): a seeded uniform subset of each bucket, whatever the chunking."""
    return [sample_points(x, buckets == b, keys, k) for b in range(n_buckets)]


def merge_bucket_samples(a: list[PointSample], b: list[PointSample]) -> list[PointSample]:
    return [merge_point_samples(p, q) for p, q in zip(a, b, strict=True)]


def sample_metrics(samples: list[PointSample], k: int, n_features: int,
                   fit_range: tuple[int, int] = DEFAULT_FIT_RANGE) -> dict[str, np.ndarray]:
    """Aggregate step: top1_share and effective_rank of each bucket's covariance over exactly k
    points (NaN for a bucket with fewer than k, or k < 2)."""
    eigs = np.zeros((len(samples), n_features))
    short = np.array([s.points.shape[0] < max(k, 2) for s in samples])
    for b, s in enumerate(samples):
        if not short[b]:
            eigs[b] = covariance_eigenvalues(covariance(point_moments(np.asarray(s.points, dtype=np.float64))))
    spectral = spectral_metrics(eigs, n_features, fit_range)
    return {key: np.where(short, np.nan, spectral[key]) for key in ("top1_share", "effective_rank")}
