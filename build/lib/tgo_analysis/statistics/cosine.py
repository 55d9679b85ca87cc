"""cosine_anisotropy (SPEC 3): per token, from the sum of unit vectors over samples.

Padding never enters: token t sums the unit vectors of the samples valid at t and counts them
(per-token counts, ``attention_mask`` true); a token with fewer than two valid samples is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.metrics import cosine_anisotropy
from tgo_analysis.kernels.moments import unit_vector_sum
from tgo_analysis.statistics.base import Block, Context, Result, StatisticBase, Variable
from tgo_analysis.statistics.masks import partial_mask


@dataclass
class UnitSums:
    count: int | np.ndarray  # samples summed: one int, or (T,) per token under a mask
    total: np.ndarray  # (T, D) Σ x/‖x‖, float64


@dataclass(frozen=True)
class CosineAnisotropy(StatisticBase):
    name: str = N.COSINE_ANISOTROPY
    metrics: tuple[str, ...] = (N.COSINE_ANISOTROPY,)
    token_split: bool = True

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(N.COSINE_ANISOTROPY, (N.TOKEN,), (ctx.n_tokens,)),)

    def chunk(self, block: Block, ctx: Context) -> UnitSums:
        valid = partial_mask(block)
        if valid is None:
            return UnitSums(block.x.shape[0], unit_vector_sum(block.x))
        return UnitSums(valid.sum(axis=0), unit_vector_sum(block.x, valid))

    def combine(self, a: UnitSums, b: UnitSums) -> UnitSums:
        a.total += b.total
        return UnitSums(a.count + b.count, a.total)

    def aggregate(self, partial: UnitSums, ctx: Context) -> Result:
        n = np.asarray(partial.count, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = cosine_anisotropy(partial.total, partial.count)
        return Result({N.COSINE_ANISOTROPY: np.where(n > 1, value, np.nan) if n.ndim else value})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return n_tokens * ctx.n_features * 8
