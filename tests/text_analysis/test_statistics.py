"""The pooled and frequency statistics through the production fold, out of core: a text-like
store written with plain xarray to zarr (chunked by sample), measured against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from tests.text_analysis.support import CHUNK
from tgo_analysis import names as N
from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.graph import Plan, reduce_unit
from tgo_analysis.kernels import pooling as P
from tgo_analysis.kernels.buckets import frequency_edges
from tgo_analysis.statistics import statistic, statistics
from tgo_analysis.statistics.base import Context
from tgo_store.store import schema as S
from tgo_store.store import validity as V


def run(ds: xr.Dataset, names: tuple[str, ...], params: dict | None = None, ci: int = 0, li: int = 1):
    """One (checkpoint, layer) through prepare + the fold, as the analysis runs it."""
    act = S.validate_activations(ds)
    _, _, n, t, d = act.shape
    stats = [s for s in statistics() if any(m in s.metrics for m in names)]
    ctx = Context(n, t, d, n_rank=d, itemsize=act.dtype.itemsize, metrics=names, params=params or {})
    prepared = {s.name: s.prepare(ds, ctx) for s in stats if hasattr(s, "prepare")}
    ctx = Context(n, t, d, n_rank=d, itemsize=act.dtype.itemsize, metrics=names, params=prepared)
    extras = {k: LazySlab(ds[k].data if hasattr(ds[k].data, "chunks") else ds[k].chunk({S.SAMPLE: CHUNK}).data)
              for k in (S.ATTENTION_MASK, S.TOKEN_ID, S.TOKEN_SPECIAL) if k in ds.variables}
    source = UnitSource(LazySlab(act.data[ci, li]), extras)
    out = reduce_unit(source, stats, ctx, Plan(((0, t),), threads=2))
    return out, ctx, stats


def reference_points(ds: xr.Dataset, valid: np.ndarray, ci: int = 0, li: int = 1) -> np.ndarray:
    return np.asarray(ds[S.ACTIVATIONS][ci, li].values, dtype=np.float64)[valid]


@pytest.mark.parametrize("choice", [V.PositionChoice(), V.PositionChoice(exclude_special=True, exclude_first=True)])
def test_pooled_statistic_equals_numpy_on_the_masked_points(store, choice) -> None:
    from skdim.id import TwoNN

    out, ctx, stats = run(store, (N.POOLED,), {N.POOLED: {"positions": choice, "id_points": 300}})
    mask, special = store[S.ATTENTION_MASK].values, store[S.TOKEN_SPECIAL].values
    valid = V.valid_positions(mask.shape, mask, special, choice)
    points = reference_points(store, valid)
    ref = np.clip(np.sort(np.linalg.eigvalsh(np.cov(points, rowvar=False)))[::-1], 0, None)
    np.testing.assert_allclose(out[N.EIGENVALUES_POOLED], ref, rtol=1e-8, atol=1e-10 * ref[0])
    np.testing.assert_allclose(out[N.TOP1_SHARE_POOLED], ref[0] / ref.sum(), rtol=1e-6)
    np.testing.assert_allclose(out[N.pooled(N.EFFECTIVE_RANK)], np.exp(scipy.stats.entropy(ref)), rtol=1e-6)
    u = points / np.linalg.norm(points, axis=1, keepdims=True)
    s = u.sum(axis=0)
    np.testing.assert_allclose(out[N.COSINE_ANISOTROPY_POOLED],
                               (s @ s - len(u)) / (len(u) * (len(u) - 1)), rtol=1e-9)
    keys = P.position_keys(np.arange(mask.shape[0]), (0, mask.shape[1]), ctx.seed)
    flat = np.flatnonzero(valid)
    subset = flat[np.argsort(keys.ravel()[flat])[:300]]
    x = np.asarray(store[S.ACTIVATIONS][0, 1].values).reshape(-1, store.sizes[S.FEATURE])
    twonn = TwoNN(discard_fraction=0.1).fit(x[subset].astype(np.float64)).dimension_
    np.testing.assert_allclose(out[N.INTRINSIC_DIMENSION_POOLED], twonn, rtol=1e-6)
    attrs = stats[0].attrs(ctx)
    assert attrs["pooled_exclude_special"] == choice.exclude_special
    assert attrs["pooled_exclude_first"] == choice.exclude_first
    assert {v.name for v in stats[0].variables(ctx)} >= {N.EIGENVALUES_POOLED, N.TOP1_SHARE_POOLED,
                                                          N.INTRINSIC_DIMENSION_POOLED}


def test_pooled_statistic_on_an_image_store_pools_every_patch_token(store) -> None:
    images = store[[S.ACTIVATIONS]].drop_vars([S.TOKEN_ID, S.ATTENTION_MASK, S.TOKEN_SPECIAL])
    out, _, _ = run(images, (N.TOP1_SHARE_POOLED, N.COSINE_ANISOTROPY_POOLED))
    points = np.asarray(store[S.ACTIVATIONS][0, 1].values, dtype=np.float64).reshape(-1, store.sizes[S.FEATURE])
    ref = np.linalg.eigvalsh(np.cov(points, rowvar=False))
    np.testing.assert_allclose(out[N.TOP1_SHARE_POOLED], ref.max() / ref.sum(), rtol=1e-6)
    assert N.INTRINSIC_DIMENSION_POOLED not in out  # not asked for
    assert not statistic(N.FREQUENCY).supports(images) and statistic(N.FREQUENCY).supports(store)


def test_frequency_statistic_equals_brute_force(store) -> None:
    # whole buckets ("points": 0, the size-confounded estimate kept for comparison): the equal-count
    # default is tested in test_frequency_equal_count.py
    out, ctx, stats = run(store, (N.FREQUENCY,), {N.FREQUENCY: {"n_buckets": 5, "distance_points": 400, "points": 0}})
    counts, ids = store[S.VOCAB_COUNT].values, store[S.TOKEN_ID].values
    valid = store[S.ATTENTION_MASK].values
    edges = frequency_edges(counts, 5)
    coords = stats[0].coords(ctx)
    np.testing.assert_array_equal(coords[N.FREQUENCY_LOW][1], edges[:-1])
    np.testing.assert_array_equal(coords[N.FREQUENCY_HIGH][1], edges[1:])
    x = np.asarray(store[S.ACTIVATIONS][0, 1].values, dtype=np.float64)
    mean = x[valid].mean(axis=0)
    id_count = np.where(ids >= 0, counts[np.maximum(ids, 0)], 0)
    keys = P.position_keys(np.arange(ids.shape[0]), (0, ids.shape[1]), ctx.seed)
    flat = np.flatnonzero(valid)
    subset = np.zeros(valid.size, bool)
    subset[flat[np.argsort(keys.ravel()[flat])[:400]]] = True
    subset = subset.reshape(valid.shape)
    dist = np.linalg.norm(x - mean, axis=-1)
    for b in range(edges.size - 1):
        inside = valid & (id_count >= edges[b]) & (id_count < edges[b + 1])
        lam = np.clip(np.linalg.eigvalsh(np.cov(x[inside], rowvar=False))[::-1], 0, None)
        np.testing.assert_allclose(out[N.TOP1_SHARE_BY_FREQUENCY][b], lam[0] / lam.sum(), rtol=1e-6)
        np.testing.assert_allclose(out[N.EFFECTIVE_RANK_BY_FREQUENCY][b], np.exp(scipy.stats.entropy(lam)),
                                   rtol=1e-6)
        np.testing.assert_allclose(out[N.MEAN_NORM_BY_FREQUENCY][b], np.linalg.norm(x[inside], axis=1).mean(),
                                   rtol=1e-9)
        np.testing.assert_allclose(out[N.CENTROID_DISTANCE_BY_FREQUENCY][b], dist[inside & subset].mean(),
                                   rtol=1e-9)
    rho = scipy.stats.spearmanr(np.log(id_count[subset]), dist[subset]).statistic
    np.testing.assert_allclose(out[N.FREQUENCY_CENTROID_SPEARMAN], rho, rtol=1e-9)
    assert "frequency_buckets" in stats[0].attrs(ctx)
