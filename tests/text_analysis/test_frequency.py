"""Frequency buckets (SPEC 5) against brute-force numpy references on in-memory data."""

from __future__ import annotations

from functools import reduce
from itertools import pairwise

import numpy as np
import pytest
import scipy.stats

from tests.text_analysis.support import text_like
from tgo_analysis.kernels import buckets as F
from tgo_analysis.kernels import pooling as P
from tgo_store.store import validity as V

CUTS = [0, 7, 8, 31, 48]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return text_like(seed=1)


def test_edges_are_log_spaced_and_put_every_seen_count_in_one_bucket() -> None:
    counts = np.array([0, 1, 2, 3, 7, 50, 999, 1000, 0, 13])
    edges = F.frequency_edges(counts, 6)
    assert edges[0] == 1 and edges[-1] == 1001 and np.all(np.diff(edges) > 0)
    ratios = edges[1:] / edges[:-1]
    assert ratios.max() / ratios.min() < 2.5  # log-spaced up to integer rounding
    ids = np.arange(counts.size)[None, :]
    buckets = F.position_buckets(ids, counts, edges, np.ones(ids.shape, bool))[0]
    for i, c in enumerate(counts):
        if c == 0:
            assert buckets[i] == -1
        else:
            assert edges[buckets[i]] <= c < edges[buckets[i] + 1]
    assert F.frequency_edges(np.arange(1, 4), 10).size <= 4  # small counts: fewer buckets


def test_bucket_metrics_equal_brute_force(data) -> None:
    x, counts = data["x"].astype(np.float32), data["counts"]
    valid = V.valid_positions(data["mask"].shape, data["mask"])
    edges = F.frequency_edges(counts, 5)
    n_buckets = edges.size - 1
    buckets = F.position_buckets(data["ids"], counts, edges, valid)
    parts = [F.bucket_sums(x[a:b], buckets[a:b], valid[a:b], n_buckets) for a, b in pairwise(CUTS)]
    got = F.bucket_metrics(reduce(F.merge_bucket_sums, parts))
    mean = F.pooled_mean(reduce(F.merge_bucket_sums, [F.bucket_sums(x, buckets, valid, n_buckets)]))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64[valid].mean(axis=0), rtol=1e-10)
    id_count = np.where(data["ids"] >= 0, counts[np.maximum(data["ids"], 0)], 0)
    for b in range(n_buckets):
        inside = valid & (id_count >= edges[b]) & (id_count < edges[b + 1])
        points = x64[inside]
        assert got["count"][b] == inside.sum() > 2
        lam = np.clip(np.sort(np.linalg.eigvalsh(np.cov(points, rowvar=False)))[::-1], 0, None)
        nz = lam[lam > lam[0] * lam.size * np.finfo(np.float64).eps]
        np.testing.assert_allclose(got["top1_share"][b], nz[0] / nz.sum(), rtol=1e-6)
        np.testing.assert_allclose(got["effective_rank"][b], np.exp(scipy.stats.entropy(nz)), rtol=1e-6)
        np.testing.assert_allclose(got["mean_norm"][b], np.linalg.norm(points, axis=1).mean(), rtol=1e-10)


def test_distance_by_bucket_and_spearman_equal_scipy(data) -> None:
    x, counts, ids = data["x"], data["counts"], data["ids"]
    valid = data["mask"] & ~data["special"]
    edges = F.frequency_edges(counts, 5)
    keys = P.position_keys(np.arange(x.shape[0]), (0, x.shape[1]), seed=0)
    sample = P.sample_points(x, valid, keys, 400, ids)
    mean = x[valid].mean(axis=0)
    dist = F.centroid_distances(sample.points, mean)
    ref_dist = np.sqrt(((sample.points - mean) ** 2).sum(axis=1))
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)
    point_counts = counts[sample.labels]
    point_buckets = np.searchsorted(edges, point_counts, side="right") - 1
    got = F.distance_by_bucket(dist, point_buckets, edges.size - 1)
    for b in range(edges.size - 1):
        inside = point_buckets == b
        if inside.any():
            np.testing.assert_allclose(got[b], ref_dist[inside].mean(), rtol=1e-12)
        else:
            assert np.isnan(got[b])
    rho = F.frequency_spearman(point_counts, dist)
    np.testing.assert_allclose(rho, scipy.stats.spearmanr(np.log(point_counts), ref_dist).statistic, rtol=1e-10)
    assert rho < -0.2  # planted: rare tokens lie farther from the centroid
    assert np.isnan(F.frequency_spearman(np.array([1, 2]), np.array([0.1, 0.2])))


def test_mean_norm_without_moments_is_the_brute_force_mean(data) -> None:
    """Equal-count spectra keep no per-bucket moments (moments=False, the analysis default); the mean
    norm must still count each bucket's positions (it was all NaN: the count came from the moments)."""
    x, counts = data["x"].astype(np.float32), data["counts"]
    valid = V.valid_positions(data["mask"].shape, data["mask"])
    edges = F.frequency_edges(counts, 5)
    n_buckets = edges.size - 1
    buckets = F.position_buckets(data["ids"], counts, edges, valid)
    parts = [F.bucket_sums(x[a:b], buckets[a:b], valid[a:b], n_buckets, moments=False) for a, b in pairwise(CUTS)]
    got = F.bucket_metrics(reduce(F.merge_bucket_sums, parts))
    x64 = x.astype(np.float64)
    for b in range(n_buckets):
        points = x64[buckets == b]
        assert got["count"][b] == points.shape[0] > 0
        np.testing.assert_allclose(got["mean_norm"][b], np.linalg.norm(points, axis=1).mean(), rtol=1e-10)
