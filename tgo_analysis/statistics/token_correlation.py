"""token_correlation and mean_token_correlation (SPEC 2): from float64 token Gram sums."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.correlation import (
    GramSums,
    mean_lower_triangle,
    merge_gram_sums,
    token_correlation,
    token_gram_sums,
)
from tgo_analysis.statistics.base import Block, Context, Result, StatisticBase, Variable


@dataclass(frozen=True)
class TokenCorrelation(StatisticBase):
    name: str = N.TOKEN_CORRELATION
    metrics: tuple[str, ...] = (N.TOKEN_CORRELATION,)
    token_split: bool = False
    aliases: ClassVar[Mapping[str, str]] = {N.MEAN_TOKEN_CORRELATION: N.TOKEN_CORRELATION}

    def attrs(self, ctx: Context) -> dict[str, str]:
        return {N.TOKEN_CORRELATION: "Pearson r between tokens' flattened (sample x feature) activations from "
                "float64 Gram sums"}

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        t = ctx.n_tokens
        return (Variable(N.TOKEN_CORRELATION, (N.TOKEN, N.TOKEN_OTHER), (t, t)),
                Variable(N.MEAN_TOKEN_CORRELATION, (), ()))

    def chunk(self, block: Block, ctx: Context) -> GramSums:
        return token_gram_sums(block.x)

    def combine(self, a: GramSums, b: GramSums) -> GramSums:
        return merge_gram_sums(a, b)

    def aggregate(self, partial: GramSums, ctx: Context) -> Result:
        corr = token_correlation(partial)
        return Result({N.TOKEN_CORRELATION: corr, N.MEAN_TOKEN_CORRELATION: np.asarray(mean_lower_triangle(corr))})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return (n_tokens + 1) * n_tokens * 8
