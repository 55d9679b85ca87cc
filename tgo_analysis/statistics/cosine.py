"""cosine_anisotropy (SPEC 3): per token, from the sum of unit vectors over samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.metrics import cosine_anisotropy
from tgo_analysis.kernels.moments import unit_vector_sum
from tgo_analysis.statistics.base import Block, Context, Result, StatisticBase, Variable


@dataclass
class UnitSums:
    count: int
    total: np.ndarray  # (T, D) Σ x/‖x‖, float64


@dataclass(frozen=True)
class CosineAnisotropy(StatisticBase):
    name: str = N.COSINE_ANISOTROPY
    metrics: tuple[str, ...] = (N.COSINE_ANISOTROPY,)
    token_split: bool = True

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(N.COSINE_ANISOTROPY, (N.TOKEN,), (ctx.n_tokens,)),)

    def chunk(self, block: Block, ctx: Context) -> UnitSums:
        return UnitSums(block.x.shape[0], unit_vector_sum(block.x))

    def combine(self, a: UnitSums, b: UnitSums) -> UnitSums:
        a.total += b.total
        return UnitSums(a.count + b.count, a.total)

    def aggregate(self, partial: UnitSums, ctx: Context) -> Result:
        return Result({N.COSINE_ANISOTROPY: cosine_anisotropy(partial.total, partial.count)})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return n_tokens * ctx.n_features * 8
