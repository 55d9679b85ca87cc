"""intrinsic_dimension (SPEC 3): TwoNN on a seeded subset of samples, gathered while folding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.intrinsic import subsample_indices, twonn_dimension
from tgo_analysis.reductions.base import Block, Context, Result, Variable

DEFAULT_ID_SAMPLES = 2000


@dataclass(frozen=True)
class IntrinsicDimension:
    name: str = N.INTRINSIC_DIMENSION
    metrics: tuple[str, ...] = (N.INTRINSIC_DIMENSION,)
    token_split: bool = False

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        return (Variable(N.INTRINSIC_DIMENSION, (), ()),)

    def _subset(self, ctx: Context) -> np.ndarray:
        return subsample_indices(ctx.n_samples, int(ctx.params.get(self.name, DEFAULT_ID_SAMPLES)), ctx.seed)

    def chunk(self, block: Block, ctx: Context) -> list[np.ndarray]:
        keep = np.isin(block.samples, self._subset(ctx))
        return [np.array(block.x[keep])]

    def combine(self, a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
        a.extend(b)
        return a

    def aggregate(self, partial: list[np.ndarray], ctx: Context) -> Result:
        x = np.concatenate(partial)
        return Result({N.INTRINSIC_DIMENSION: np.asarray(twonn_dimension(x.reshape(x.shape[0], -1)))})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        n = min(ctx.n_samples, int(ctx.params.get(self.name, DEFAULT_ID_SAMPLES)))
        return n * n_tokens * ctx.n_features * (ctx.itemsize + 8)  # rows, and float64 for TwoNN
