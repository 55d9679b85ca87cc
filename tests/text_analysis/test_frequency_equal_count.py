"""Equal-count by-frequency spectra (issue 18 item 6): bucket size no longer masquerades as geometry.

One distribution of vectors (D = 128), its positions split into frequency buckets of 100, 1000
and 10000 positions. On equal-count subsamples the buckets' effective ranks agree within sampling error;
the whole-bucket estimate (``frequency_points=0``) climbs with bucket size. Each subsample is
the k positions of the bucket with the smallest seeded keys, checked against a float64 numpy
reference, and does not depend on chunking.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.analyze import analyze
from tgo_analysis.kernels.buckets import frequency_edges, position_buckets
from tgo_analysis.kernels.pooling import position_keys
from tgo_store.store import schema as S

N_SAMPLES, N_TOKENS, D = 111, 100, 128
K = 100


def one_distribution(chunk: int = 32) -> xr.Dataset:
    rng = np.random.default_rng(4)
    ids = np.concatenate([np.arange(100), np.repeat(np.arange(100, 200), 10), np.repeat(np.arange(200, 300), 100)])
    ids = rng.permutation(ids).reshape(N_SAMPLES, N_TOKENS).astype(np.int32)
    x = rng.standard_normal((N_SAMPLES, N_TOKENS, D)) * np.arange(1, D + 1) ** -0.5 + 1.0
    shape = (S.SAMPLE, S.TOKEN)
    return xr.Dataset({S.ACTIVATIONS: (S.DIMS, x[None, None].astype(np.float32)),
                       S.VOCAB_COUNT: (S.VOCAB, np.bincount(ids.ravel(), minlength=300).astype(np.int64))},
                      coords={S.TOKEN_ID: (shape, ids), S.ATTENTION_MASK: (shape, np.ones(ids.shape, bool)),
                              S.TOKEN_SPECIAL: (shape, np.zeros(ids.shape, bool))}).chunk({S.SAMPLE: chunk})


def effective_rank(points: np.ndarray) -> float:
    lam = np.clip(np.linalg.eigvalsh(np.cov(points, rowvar=False)), 0, None)
    return float(np.exp(scipy.stats.entropy(lam / lam.sum())))


def test_equal_count_effective_rank_does_not_follow_bucket_size() -> None:
    ds = one_distribution()
    names = f"{N.EFFECTIVE_RANK_BY_FREQUENCY},{N.TOP1_SHARE_BY_FREQUENCY}"
    equal = analyze(ds, names, progress=False, frequency_buckets=4)
    whole = analyze(ds, names, progress=False, frequency_buckets=4, frequency_points=0)
    rechunked = analyze(one_distribution(chunk=50), names, progress=False, frequency_buckets=4)
    counts = ds[S.VOCAB_COUNT].values
    edges = frequency_edges(counts, 4)
    buckets = position_buckets(ds[S.TOKEN_ID].values, counts, edges, np.ones((N_SAMPLES, N_TOKENS), bool))
    sizes = np.bincount(buckets.ravel(), minlength=edges.size - 1)
    assert sorted(sizes[sizes > 0].tolist()) == [100, 1000, 10000]
    assert equal.attrs["frequency_equal_count"] == K
    er = equal[N.EFFECTIVE_RANK_BY_FREQUENCY].values[0, 0]
    np.testing.assert_array_equal(er, rechunked[N.EFFECTIVE_RANK_BY_FREQUENCY].values[0, 0])
    x = np.asarray(ds[S.ACTIVATIONS].values[0, 0], dtype=np.float64).reshape(-1, D)
    keys = position_keys(np.arange(N_SAMPLES), (0, N_TOKENS)).ravel()
    used = [b for b in range(edges.size - 1) if sizes[b] > 0]
    for b in used:
        inside = np.flatnonzero(buckets.ravel() == b)
        chosen = inside[np.argsort(keys[inside], kind="stable")[:K]]
        np.testing.assert_allclose(er[b], effective_rank(x[chosen]), rtol=1e-9)
        np.testing.assert_allclose(whole[N.EFFECTIVE_RANK_BY_FREQUENCY].values[0, 0, b], effective_rank(x[inside]),
                                   rtol=1e-6)
    assert np.isnan(er[sizes == 0]).all()
    # sampling error of a K-point estimate: random K-subsets of the whole cloud (one distribution)
    rng = np.random.default_rng(0)
    draws = [effective_rank(x[rng.choice(len(x), K, replace=False)]) for _ in range(40)]
    centre, sigma = np.mean(draws), np.std(draws)
    assert (np.abs(er[used] - centre) < 4 * sigma).all(), (er[used], centre, sigma)
    old = whole[N.EFFECTIVE_RANK_BY_FREQUENCY].values[0, 0, used]
    small, big = old[np.argmin(sizes[used])], old[np.argmax(sizes[used])]
    assert big - small > 10 * sigma and big / small > 1.3, old  # whole buckets follow size
