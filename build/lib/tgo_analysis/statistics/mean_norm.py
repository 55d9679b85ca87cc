"""mean_norm (SPEC 2): per token, the mean L2 norm of the un-centred token vectors over samples.

Padding positions (``attention_mask`` false) are left out when the store has a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.statistics.base import Block, Context, Result, StatisticBase, Variable


@dataclass
class NormSums:
    count: np.ndarray  # (T,) vectors counted per token
    total: np.ndarray  # (T,) Σ ‖x‖₂ per token, float64


@dataclass(frozen=True)
class MeanNorm(StatisticBase):
    name: str = N.MEAN_NORM
    metrics: tuple[str, ...] = (N.MEAN_NORM,)
    token_split: bool = True

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(N.MEAN_NORM, (N.TOKEN,), (ctx.n_tokens,)),)

    def chunk(self, block: Block, ctx: Context) -> NormSums:
        norms = np.linalg.norm(np.asarray(block.x, dtype=np.float64), axis=-1)  # (n, T)
        valid = np.ones(norms.shape, bool) if block.attention_mask is None else np.asarray(block.attention_mask, bool)
        return NormSums(valid.sum(axis=0), np.where(valid, norms, 0.0).sum(axis=0))

    def combine(self, a: NormSums, b: NormSums) -> NormSums:
        a.count += b.count
        a.total += b.total
        return a

    def aggregate(self, partial: NormSums, ctx: Context) -> Result:
        with np.errstate(invalid="ignore", divide="ignore"):
            return Result({N.MEAN_NORM: np.where(partial.count > 0, partial.total / partial.count, np.nan)})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 16 * n_tokens
