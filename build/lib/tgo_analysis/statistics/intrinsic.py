"""intrinsic_dimension (SPEC 3): TwoNN on a seeded subset of samples, gathered while folding.

A sample is one point (all its tokens concatenated), so padding cannot be dropped position by
position: under an ``attention_mask`` only the samples of the seeded subset whose every
position is valid enter (the attrs say so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.twonn import subsample_indices
from tgo_analysis.statistics.base import Block, Context, Option, Result, StatisticBase, Variable
from tgo_analysis.statistics.id_estimator import ID_ESTIMATOR, describe, estimate, estimator
from tgo_store.errors import TgoError

DEFAULT_ID_SAMPLES = 2000
ID_SAMPLES = Option("id_samples", DEFAULT_ID_SAMPLES, "samples used for the TwoNN intrinsic dimension")


@dataclass(frozen=True)
class IntrinsicDimension(StatisticBase):
    name: str = N.INTRINSIC_DIMENSION
    metrics: tuple[str, ...] = (N.INTRINSIC_DIMENSION,)
    token_split: bool = False
    options = (ID_SAMPLES, ID_ESTIMATOR)

    def validate(self, ds: object, ctx: Context) -> None:
        n = min(ctx.n_samples, int(ctx.option(ID_SAMPLES)))
        if ctx.wants(N.INTRINSIC_DIMENSION) and n < 10:
            raise TgoError(f"intrinsic dimension needs at least 10 samples, got {n}; "
                           "raise --id-samples or leave intrinsic_dimension out of --metrics")

    def prepare(self, ds: object, ctx: Context) -> int:
        return int(ctx.params.get(self.name, ctx.option(ID_SAMPLES)))

    def attrs(self, ctx: Context) -> dict[str, str]:
        return {"id_estimator": estimator(ctx),
                N.INTRINSIC_DIMENSION: f"{describe(ctx)}, on at most "
                f"{self._samples(ctx)} seeded samples (seed {ctx.seed}) of un-centred vectors of all tokens concatenated; "
                "with an attention_mask, only those samples whose every position is valid"}

    def _samples(self, ctx: Context) -> int:
        return int(ctx.params.get(self.name, ctx.option(ID_SAMPLES)))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(N.INTRINSIC_DIMENSION, (), ()),)

    def _subset(self, ctx: Context) -> np.ndarray:
        return subsample_indices(ctx.n_samples, self._samples(ctx), ctx.seed)

    def chunk(self, block: Block, ctx: Context) -> list[np.ndarray]:
        keep = np.isin(block.samples, self._subset(ctx))
        if block.attention_mask is not None:
            keep &= np.asarray(block.attention_mask, bool).all(axis=1)
        return [np.array(block.x[keep])]

    def combine(self, a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
        a.extend(b)
        return a

    def aggregate(self, partial: list[np.ndarray], ctx: Context) -> Result:
        x = np.concatenate(partial)
        return Result({N.INTRINSIC_DIMENSION: np.asarray(estimate(x.reshape(x.shape[0], -1), ctx))})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        n = min(ctx.n_samples, self._samples(ctx))
        return n * n_tokens * ctx.n_features * (ctx.itemsize + 8)  # rows, and float64 for TwoNN
