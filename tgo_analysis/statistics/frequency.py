"""Geometry by token frequency (SPEC 5): log-spaced buckets of ``vocab_count``.

Needs a text store (``token_id`` per position and ``vocab_count``). Top-1 share and effective
rank are measured per bucket on an equal-count subsample: the same number k of positions in
every bucket (the k with the smallest seeded splitmix keys, so the subset does not depend on
chunking), because an eigenvalue spectrum estimated from n points follows n (effective rank
grows with n for one and the same distribution), and bucket sizes differ by orders of
magnitude. k is the smallest bucket with at least ``MIN_BUCKET_POINTS`` positions, capped by
``--frequency-points`` (attrs record k; smaller buckets are NaN); ``--frequency-points 0``
gives the old whole-bucket estimate, size-confounded, for comparison. Mean norm (exact,
streamed) is a mean and does not follow bucket size. Positions are bucketed by the id the model
saw: a masked-LM store's masked positions saw the mask token (``token_masked``). Mean
distance to the layer's pooled mean and Spearman ρ (log count vs that distance) are measured
on a seeded bottom-k subsample of positions against the exact pooled mean, in the same single
pass over the store. Positions follow the pooled statistic's choice (``ctx.params["pooled"]``);
options in ``ctx.params["frequency"]``: ``n_buckets`` (10), ``distance_points`` (16384).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.buckets import (
    DEFAULT_BUCKETS,
    DEFAULT_DISTANCE_POINTS,
    BucketSums,
    bucket_metrics,
    bucket_samples,
    bucket_sizes,
    bucket_sums,
    centroid_distances,
    distance_by_bucket,
    equal_count,
    frequency_edges,
    frequency_spearman,
    merge_bucket_samples,
    merge_bucket_sums,
    pooled_mean,
    position_buckets,
    sample_metrics,
)
from tgo_analysis.kernels.pooling import (
    PointSample,
    merge_point_samples,
    position_keys,
    sample_points,
)
from tgo_analysis.statistics.base import (
    FIT_RANGE,
    Block,
    Context,
    Option,
    Result,
    StatisticBase,
    Variable,
)
from tgo_analysis.statistics.pooled import block_valid
from tgo_analysis.statistics.pooled import options as pooled_options
from tgo_analysis.statistics.positions import POSITION_OPTIONS
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.masked_positions import seen_token_ids
from tgo_store.store.validity import PositionChoice, valid_positions

BY_BUCKET = {N.TOP1_SHARE_BY_FREQUENCY: "top1_share", N.EFFECTIVE_RANK_BY_FREQUENCY: "effective_rank",
             N.MEAN_NORM_BY_FREQUENCY: "mean_norm"}
NAMES = (*BY_BUCKET, N.CENTROID_DISTANCE_BY_FREQUENCY, N.FREQUENCY_CENTROID_SPEARMAN)
BUCKETS = Option("frequency_buckets", DEFAULT_BUCKETS, "log-spaced buckets of vocab_count for the frequency metrics")
DEFAULT_FREQUENCY_POINTS = 1024
MIN_BUCKET_POINTS = 32  # a bucket smaller than this is NaN rather than shrinking every bucket's subsample
POINTS = Option("frequency_points", DEFAULT_FREQUENCY_POINTS, "frequency: at most this many positions per bucket "
                "(the same count in every bucket) for top1_share/effective_rank_by_frequency; 0 = whole buckets")


def supports(ds: Any) -> bool:
    """A store with token ids per position and the vocabulary counts."""
    return S.TOKEN_ID in ds.variables and S.VOCAB_COUNT in ds.variables


def frequency_params(ds: Any, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options with defaults, plus ``vocab_count`` and the bucket ``edges`` read from the store."""
    if not supports(ds):
        raise TgoError(f"frequency metrics need '{S.TOKEN_ID}' and '{S.VOCAB_COUNT}' in the store (a text store "
                       "written by tgo ingest --model hf:...); leave frequency out of --metrics")
    opts = {"n_buckets": DEFAULT_BUCKETS, "distance_points": DEFAULT_DISTANCE_POINTS,
            "points": DEFAULT_FREQUENCY_POINTS, **(given or {})}
    counts = np.asarray(ds[S.VOCAB_COUNT].values, dtype=np.int64)
    edges = frequency_edges(counts, int(opts["n_buckets"]))
    seen = seen_token_ids(ds)
    return {**opts, "vocab_count": counts, "edges": edges, "seen_ids": seen,
            "mask_token_id": ds[S.TOKEN_MASKED].attrs.get("mask_token_id") if seen is not None else None}


def subsample_size(ds: Any, params: dict[str, Any], choice: PositionChoice) -> tuple[int, np.ndarray]:
    """(k, positions per bucket) over the store's positions: k the equal count of every bucket."""
    mask = ds[S.ATTENTION_MASK].values if S.ATTENTION_MASK in ds.variables else None
    special = ds[S.TOKEN_SPECIAL].values if S.TOKEN_SPECIAL in ds.variables else None
    ids = params["seen_ids"] if params.get("seen_ids") is not None else ds[S.TOKEN_ID].values
    valid = valid_positions(ids.shape, mask, special, choice)
    n_buckets = params["edges"].size - 1
    sizes = bucket_sizes(position_buckets(ids, params["vocab_count"], params["edges"], valid), n_buckets)
    cap = int(params["points"])
    return (equal_count(sizes, cap, MIN_BUCKET_POINTS) if cap > 0 else 0), sizes


@dataclass
class FrequencyPartial:
    sums: BucketSums
    sample: PointSample
    buckets: list[PointSample] | None  # equal-count subsample of each bucket (None: whole buckets)


@dataclass(frozen=True)
class Frequency(StatisticBase):
    name: str = N.FREQUENCY
    metrics: tuple[str, ...] = (N.FREQUENCY, *NAMES)
    token_split: bool = False
    options = (*POSITION_OPTIONS, BUCKETS, POINTS, FIT_RANGE)

    def _params(self, ctx: Context) -> dict[str, Any]:
        params = ctx.params.get(self.name)
        if not params or "edges" not in params:
            raise TgoError("frequency metrics were not prepared with the store's vocab_count; "
                           "run them through tgo analyze (or call Frequency.prepare first)")
        return params

    def supports(self, ds: Any) -> bool:
        return supports(ds)

    def prepare(self, ds: Any, ctx: Context) -> dict[str, Any]:
        given = {"n_buckets": int(ctx.option(BUCKETS)), "points": int(ctx.option(POINTS)),
                 **(ctx.params.get(self.name) or {})}
        if int(given["points"]) < 0:
            raise TgoError(f"--frequency-points {given['points']} is negative; give a count, or 0 for whole buckets")
        params = frequency_params(ds, given)
        k, sizes = subsample_size(ds, params, pooled_options(ctx)["positions"])
        return {**params, "k": k, "bucket_sizes": sizes}

    def _ids(self, block: Block, p: dict[str, Any]) -> np.ndarray:
        """The ids the model saw at the block's positions (masked LM: the mask token where masked)."""
        seen = p.get("seen_ids")
        if seen is None:
            return block.token_id
        lo, hi = block.tokens
        return np.asarray(seen)[block.samples][:, lo:hi]

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        n = self._params(ctx)["edges"].size - 1
        return (*(Variable(name, (N.FREQUENCY_BUCKET,), (n,)) for name in NAMES[:-1]),
                Variable(N.FREQUENCY_CENTROID_SPEARMAN, (), ()))

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        edges = self._params(ctx)["edges"]
        return {N.FREQUENCY_BUCKET: (N.FREQUENCY_BUCKET, np.arange(edges.size - 1)),
                N.FREQUENCY_LOW: (N.FREQUENCY_BUCKET, edges[:-1]),
                N.FREQUENCY_HIGH: (N.FREQUENCY_BUCKET, edges[1:])}

    def attrs(self, ctx: Context) -> dict[str, Any]:
        p = self._params(ctx)
        k = int(p.get("k", 0))
        equal = (f"top1_share_by_frequency and effective_rank_by_frequency on an equal-count subsample of {k} "
                 f"positions per bucket (the {k} with the smallest seeded splitmix64 keys, seed {ctx.seed}): the "
                 f"smallest bucket with at least {MIN_BUCKET_POINTS} positions, at most {int(p.get('points', 0))}; "
                 f"buckets with fewer are NaN") if k > 0 else (
                 "top1_share_by_frequency and effective_rank_by_frequency over every position of each bucket "
                 "(whole buckets: the estimates follow bucket size)")
        return {**pooled_options(ctx)["positions"].attrs(),
                "frequency_equal_count": k, "frequency_subsample": equal,
                "frequency_bucket_positions": [int(v) for v in p.get("bucket_sizes", [])],
                "frequency_token_ids": "the id the model saw at each position" + (
                    f": masked-LM positions saw the mask token (id {p.get('mask_token_id')})"
                    if p.get("seen_ids") is not None else " (the store's token_id)"),
                "frequency_buckets": f"log-spaced integer edges of vocab_count from 1 to max + 1 ({p['n_buckets']} "
                "asked, equal edges merged); bucket b holds counts in [frequency_low, frequency_high)",
                N.CENTROID_DISTANCE_BY_FREQUENCY: "mean ||x - mu|| with mu the exact pooled mean of the layer, over "
                f"the {p['distance_points']} positions with the smallest seeded keys (seed {ctx.seed})",
                N.FREQUENCY_CENTROID_SPEARMAN: "Spearman rho (average ranks for ties) between log vocab_count and "
                "||x - mu|| over that same seeded subsample of positions"}

    def chunk(self, block: Block, ctx: Context) -> FrequencyPartial:
        p = self._params(ctx)
        if block.token_id is None:
            raise TgoError(f"the store has no '{S.TOKEN_ID}' per position; leave frequency out of --metrics")
        valid = block_valid(block, pooled_options(ctx)["positions"])
        ids = self._ids(block, p)
        buckets = position_buckets(ids, p["vocab_count"], p["edges"], valid)
        keys = position_keys(block.samples, block.tokens, ctx.seed)
        n_buckets, k = p["edges"].size - 1, int(p.get("k", 0))
        return FrequencyPartial(bucket_sums(block.x, buckets, valid, n_buckets, moments=k == 0),
                                sample_points(block.x, valid, keys, int(p["distance_points"]), ids),
                                bucket_samples(block.x, buckets, keys, n_buckets, k) if k > 0 else None)

    def combine(self, a: FrequencyPartial, b: FrequencyPartial) -> FrequencyPartial:
        return FrequencyPartial(merge_bucket_sums(a.sums, b.sums), merge_point_samples(a.sample, b.sample),
                                None if a.buckets is None else merge_bucket_samples(a.buckets, b.buckets))

    def aggregate(self, partial: FrequencyPartial, ctx: Context) -> Result:
        p = self._params(ctx)
        counts, edges = p["vocab_count"], p["edges"]
        metrics = bucket_metrics(partial.sums, ctx.fit_range)
        if partial.buckets is not None:
            metrics |= sample_metrics(partial.buckets, int(p["k"]), ctx.n_features, ctx.fit_range)
        arrays = {name: metrics[key] for name, key in BY_BUCKET.items()}
        labels = partial.sample.labels
        distances = centroid_distances(partial.sample.points, pooled_mean(partial.sums))
        point_buckets = position_buckets(labels, counts, edges, np.ones(labels.shape, bool))
        arrays[N.CENTROID_DISTANCE_BY_FREQUENCY] = distance_by_bucket(distances, point_buckets, edges.size - 1)
        known = point_buckets >= 0
        arrays[N.FREQUENCY_CENTROID_SPEARMAN] = np.asarray(
            frequency_spearman(counts[labels[known]], distances[known]))
        return Result(arrays)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        p = ctx.params.get(self.name) or {}
        n = int(p["edges"].size - 1) if "edges" in p else DEFAULT_BUCKETS
        points = int(p.get("distance_points", DEFAULT_DISTANCE_POINTS)) * ctx.n_features * (ctx.itemsize + 8)
        k = int(p.get("k", 0))
        spectra = n * k * ctx.n_features * (ctx.itemsize + 8) if k > 0 else (n + 2) * ctx.n_features ** 2 * 8
        return spectra + 2 * ctx.n_features ** 2 * 8 + points
