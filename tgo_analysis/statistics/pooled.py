"""Pooled geometry (SPEC 5): every valid (sample, token) vector of a layer as one point.

Section 3 metrics of the pooled covariance (``*_pooled``, Razzhigaev et al.'s anisotropy is
``top1_share_pooled``), cosine anisotropy over the pooled points, and TwoNN on a seeded
bottom-k subsample of positions. Works on image stores too: no ``attention_mask`` means every
patch token is a point. Options in ``ctx.params["pooled"]``: ``positions`` (a
``PositionChoice``), ``id_points`` (default 4096).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.moments import Moments, merge_moments
from tgo_analysis.kernels.noise_floor import moments_mean_square_norm, noise_floor
from tgo_analysis.kernels.pooling import (
    DEFAULT_ID_POINTS,
    PointSample,
    merge_point_samples,
    pooled_cosine_anisotropy,
    pooled_moments,
    pooled_spectrum_metrics,
    pooled_unit_sum,
    position_keys,
    sample_points,
)
from tgo_analysis.statistics import baselines as B
from tgo_analysis.statistics.base import (
    FIT_RANGE,
    Block,
    Context,
    Option,
    Result,
    StatisticBase,
    Variable,
)
from tgo_analysis.statistics.id_estimator import ID_ESTIMATOR, describe, estimate, estimator
from tgo_analysis.statistics.positions import POSITION_OPTIONS, position_choice
from tgo_store.store import schema as S
from tgo_store.store.validity import PositionChoice, valid_positions

SPECTRAL = (N.ALPHA, N.ALPHA_R2, N.EFFECTIVE_RANK, N.STABLE_RANK, N.PARTICIPATION_RATIO,
            N.SPECTRAL_ENTROPY, N.SPECTRAL_FLATNESS, N.TOP1_SHARE)
FLOOR_NAMES = tuple(N.pooled(m) for m in (N.NOISE_FLOOR, N.RESOLVED_RANK, N.N_SAMPLES))  # SPEC 8
SPECTRUM_NAMES = (N.EIGENVALUES_POOLED, *(N.pooled(m) for m in SPECTRAL), *FLOOR_NAMES,
                  *B.isotropic_names(N.POOLED_SUFFIX))
NAMES = (*SPECTRUM_NAMES, N.COSINE_ANISOTROPY_POOLED, N.INTRINSIC_DIMENSION_POOLED)
ID_POINTS = Option("pooled_id_points", DEFAULT_ID_POINTS, "pooled positions (seeded subsample) for "
                   "intrinsic_dimension_pooled")


MIN_DISTINCT_POINTS = 32  # fewer distinct pooled points than this: no TwoNN estimate (NaN)


def distinct_estimate(points: np.ndarray, ctx: Context) -> float:
    """The chosen ID estimator (``--id-estimator``) on the distinct points only: repeated tokens share one vector where nothing mixes them
    (a decoder's layer 0 is its embedding table: 1,620 distinct of 16,384 positions in the text
    demo), and each copy makes a neighbour at distance 0 and a distance ratio of 1, which drives
    the estimate towards 0. NaN when fewer than MIN_DISTINCT_POINTS distinct points remain."""
    distinct = np.unique(np.asarray(points), axis=0)
    return float("nan") if distinct.shape[0] < MIN_DISTINCT_POINTS else estimate(distinct, ctx)


@dataclass
class PooledPartial:
    moments: Moments | None  # pooled count, mean (D,), co-moment (D, D)
    unit: tuple[np.ndarray, int] | None  # Σ x/‖x‖ (D,), count
    sample: PointSample | None  # bottom-k positions for TwoNN


def options(ctx: Context, name: str = N.POOLED) -> dict[str, Any]:
    """The statistic's prepared options: what ``prepare`` made of the analysis options, or the
    ``params`` a caller seeded (shared by the frequency statistic)."""
    given = dict(ctx.params.get(name) or {})
    return {**given, "positions": given.get("positions", position_choice(ctx)),
            "id_points": int(given.get("id_points", ctx.option(ID_POINTS)))}


LAYERS_AFTER_FINAL_NORM = "layers_after_final_norm"  # result attr: layers whose states follow the final norm


def block_valid(block: Block, choice: PositionChoice) -> np.ndarray:
    """The (samples, tokens) positions of a block that enter the pool."""
    return valid_positions(block.x.shape[:2], block.attention_mask, block.token_special, choice)


@dataclass(frozen=True)
class Pooled(StatisticBase):
    name: str = N.POOLED
    metrics: tuple[str, ...] = (N.POOLED, *NAMES)
    token_split: bool = False
    options = (*POSITION_OPTIONS, ID_POINTS, ID_ESTIMATOR, B.ISOTROPIC_DRAWS, FIT_RANGE)

    def _wants(self, ctx: Context, *names: str) -> bool:
        return ctx.wants(N.POOLED) or any(ctx.wants(n) for n in names)

    def _spectrum(self, ctx: Context) -> bool:
        return self._wants(ctx, *SPECTRUM_NAMES, N.pooled(N.METRIC_REASON))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        out = []
        if self._spectrum(ctx):
            out.append(Variable(N.EIGENVALUES_POOLED, (N.RANK_POOLED,), (ctx.n_features,)))
            out += [Variable(N.pooled(m), (), ()) for m in SPECTRAL]
            out.append(Variable(N.pooled(N.METRIC_REASON), (), (), np.int8, -1))
            out += B.floor_variables((), (), N.POOLED_SUFFIX)
            out += [Variable(N.isotropic(N.pooled(m)), (), ()) for m in B.isotropic_wanted(ctx, wanted=True)]
        if self._wants(ctx, N.COSINE_ANISOTROPY_POOLED):
            out.append(Variable(N.COSINE_ANISOTROPY_POOLED, (), ()))
        if self._wants(ctx, N.INTRINSIC_DIMENSION_POOLED):
            out.append(Variable(N.INTRINSIC_DIMENSION_POOLED, (), ()))
        return tuple(out)

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        return {N.RANK_POOLED: (N.RANK_POOLED, np.arange(1, ctx.n_features + 1))} if self._spectrum(ctx) else {}

    def validate(self, ds: Any, ctx: Context) -> None:
        if self._spectrum(ctx):
            B.check_draws(ctx)

    def prepare(self, ds: Any, ctx: Context) -> dict[str, Any]:
        return {**options(ctx, self.name), "final_norm_layers": S.final_norm_layers(ds),
                B.ROUNDOFF: B.store_roundoff(ds)}

    def attrs(self, ctx: Context) -> dict[str, Any]:
        opts = options(ctx, self.name)
        return {**opts["positions"].attrs(), **(B.baseline_attrs(ctx) if self._spectrum(ctx) else {}),
                LAYERS_AFTER_FINAL_NORM: [int(v) for v in opts.get("final_norm_layers", [])],
                "id_estimator": estimator(ctx),
                N.INTRINSIC_DIMENSION_POOLED: f"{describe(ctx)}, on the {opts['id_points']} pooled "
                "positions with the smallest seeded keys (splitmix64 of sample, token and seed "
                f"{ctx.seed}): a uniform subset, the same for every checkpoint and layer; duplicate "
                "vectors (repeated tokens at the embedding layer) are removed first, and fewer than "
                f"{MIN_DISTINCT_POINTS} distinct points give NaN",
                "pooled_covariance": "covariance of every pooled position as a point (D features), float64 "
                "co-moments merged pairwise (Chan, Golub & LeVeque)"}

    def chunk(self, block: Block, ctx: Context) -> PooledPartial:
        opts = options(ctx, self.name)
        valid = block_valid(block, opts["positions"])
        moments = pooled_moments(block.x, valid) if self._spectrum(ctx) else None
        unit = pooled_unit_sum(block.x, valid) if self._wants(ctx, N.COSINE_ANISOTROPY_POOLED) else None
        sample = None
        if self._wants(ctx, N.INTRINSIC_DIMENSION_POOLED):
            keys = position_keys(block.samples, block.tokens, ctx.seed)
            sample = sample_points(block.x, valid, keys, opts["id_points"], block.token_id)
        return PooledPartial(moments, unit, sample)

    def combine(self, a: PooledPartial, b: PooledPartial) -> PooledPartial:
        return PooledPartial(
            None if a.moments is None else merge_moments(a.moments, b.moments),
            None if a.unit is None else (a.unit[0] + b.unit[0], a.unit[1] + b.unit[1]),
            None if a.sample is None else merge_point_samples(a.sample, b.sample),
        )

    def aggregate(self, partial: PooledPartial, ctx: Context) -> Result:
        arrays: dict[str, np.ndarray] = {}
        if partial.moments is not None:
            mom, params = partial.moments, ctx.params.get(self.name)
            floor = noise_floor(B.roundoff(ctx, params), moments_mean_square_norm(mom.mean, mom.comoment, mom.count),
                                ctx.n_features)
            metrics = pooled_spectrum_metrics(mom, ctx.fit_range, float(floor))
            arrays[N.EIGENVALUES_POOLED] = metrics["eigenvalues"]
            arrays.update({N.pooled(m): np.asarray(metrics[m]) for m in SPECTRAL})
            arrays[N.pooled(N.METRIC_REASON)] = np.asarray(metrics["reason"], dtype=np.int8)
            count = np.asarray(int(mom.count))
            arrays |= {N.pooled(N.NOISE_FLOOR): np.asarray(floor), N.pooled(N.N_SAMPLES): count,
                       N.pooled(N.RESOLVED_RANK): np.asarray(metrics[N.RESOLVED_RANK])}
            arrays |= B.isotropic_arrays(count, B.isotropic_wanted(ctx, wanted=True), ctx, params, N.POOLED_SUFFIX)
        if partial.unit is not None:
            arrays[N.COSINE_ANISOTROPY_POOLED] = np.asarray(pooled_cosine_anisotropy(*partial.unit))
        if partial.sample is not None:
            arrays[N.INTRINSIC_DIMENSION_POOLED] = np.asarray(distinct_estimate(partial.sample.points, ctx))
        return Result(arrays)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        points = options(ctx, self.name)["id_points"] * ctx.n_features * (ctx.itemsize + 8)
        return 3 * ctx.n_features * ctx.n_features * 8 + points

