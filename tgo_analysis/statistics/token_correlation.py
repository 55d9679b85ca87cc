"""token_correlation and mean_token_correlation (SPEC 2), and their per-feature-centred variants
(SPEC 5 issue 18: ``token_correlation_centred``, ``mean_token_correlation_centred``).

Joseph's Pearson r of two tokens' flattened (sample x feature) activations subtracts one scalar
mean per token, so a mean profile over features that every sample shares gives high r on its
own. The centred variant subtracts each token's per-feature mean over samples first, so what is
left is how the tokens co-vary across samples.

Padding never enters. Under a partial ``attention_mask`` the r of tokens t and u is the Pearson
r over the samples valid at both (``kernels.correlation.PairSums``); for the centred variant
each token is first centred by its per-feature mean over the samples valid at it, which needs
those means before the products, so a padded store is read a second time for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.correlation import (
    GramSums,
    PairSums,
    centred_token_correlation,
    masked_token_correlation,
    mean_lower_triangle,
    merge_gram_sums,
    merge_pair_sums,
    pair_sums,
    token_correlation,
    token_gram_sums,
    unmasked_pair_sums,
)
from tgo_analysis.statistics.base import Block, Context, Result, StatisticBase, Variable
from tgo_analysis.statistics.masks import MASK_ATTR, partial_mask
from tgo_store.errors import TgoError


@dataclass
class CorrelationPartial:
    samples: int
    gram: GramSums | None  # while no block had padding
    pairs: PairSums | None  # from the first block with padding on
    feature_sums: np.ndarray | None  # (T, D) Σ over valid samples of x_t (centred variant)
    feature_counts: np.ndarray | None  # (T,) valid samples per token


def _pairs(p: CorrelationPartial) -> PairSums:
    return p.pairs if p.pairs is not None else unmasked_pair_sums(p.gram, p.samples)


@dataclass(frozen=True)
class CentredPairs:
    """The second read's fold: pair sums of each token centred by its per-feature mean ``mean`` (T, D)."""

    name: str
    mean: np.ndarray

    def fold(self, acc: PairSums | None, block: Block, ctx: Context) -> PairSums:
        valid = np.ones(block.x.shape[:2], bool) if block.attention_mask is None else block.attention_mask
        part = pair_sums(np.asarray(block.x, dtype=np.float64) - self.mean, valid)
        return part if acc is None else merge_pair_sums(acc, part)

    def combine(self, a: PairSums, b: PairSums) -> PairSums:
        return merge_pair_sums(a, b)


@dataclass(frozen=True)
class TokenCorrelation(StatisticBase):
    name: str = N.TOKEN_CORRELATION
    metrics: tuple[str, ...] = (N.TOKEN_CORRELATION, N.TOKEN_CORRELATION_CENTRED)
    token_split: bool = False
    aliases: ClassVar[Mapping[str, str]] = {N.MEAN_TOKEN_CORRELATION: N.TOKEN_CORRELATION,
                                            N.MEAN_TOKEN_CORRELATION_CENTRED: N.TOKEN_CORRELATION_CENTRED}

    def attrs(self, ctx: Context) -> dict[str, str]:
        out = {N.TOKEN_CORRELATION: "Pearson r between tokens' flattened (sample x feature) activations from "
               "float64 Gram sums; with padding, over the samples valid at both tokens",
               "token_correlation_mask": MASK_ATTR}
        if ctx.wants(N.TOKEN_CORRELATION_CENTRED):
            out[N.TOKEN_CORRELATION_CENTRED] = (
                "the same Pearson r after subtracting each token's per-feature mean over samples (over the "
                "samples valid at that token): high r here is co-variation across samples, not a shared mean "
                "profile; with padding, over the samples valid at both tokens (a second read of the unit)")
        return out

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        t = ctx.n_tokens
        out: list[Variable] = []
        if ctx.wants(N.TOKEN_CORRELATION):
            out += [Variable(N.TOKEN_CORRELATION, (N.TOKEN, N.TOKEN_OTHER), (t, t)),
                    Variable(N.MEAN_TOKEN_CORRELATION, (), ())]
        if ctx.wants(N.TOKEN_CORRELATION_CENTRED):
            out += [Variable(N.TOKEN_CORRELATION_CENTRED, (N.TOKEN, N.TOKEN_OTHER), (t, t)),
                    Variable(N.MEAN_TOKEN_CORRELATION_CENTRED, (), ())]
        return tuple(out)

    def chunk(self, block: Block, ctx: Context) -> CorrelationPartial:
        valid = partial_mask(block)
        n = block.x.shape[0]
        sums = counts = None
        if ctx.wants(N.TOKEN_CORRELATION_CENTRED):
            x64 = np.asarray(block.x, dtype=np.float64)
            sums = x64.sum(axis=0) if valid is None else np.where(valid[..., None], x64, 0.0).sum(axis=0)
            counts = np.full(block.x.shape[1], n) if valid is None else valid.sum(axis=0)
        if valid is None:
            return CorrelationPartial(n, token_gram_sums(block.x), None, sums, counts)
        return CorrelationPartial(n, None, pair_sums(block.x, valid), sums, counts)

    def combine(self, a: CorrelationPartial, b: CorrelationPartial) -> CorrelationPartial:
        if a.pairs is None and b.pairs is None:
            gram, pairs = merge_gram_sums(a.gram, b.gram), None
        else:
            gram, pairs = None, merge_pair_sums(_pairs(a), _pairs(b))
        fsum = None if a.feature_sums is None else a.feature_sums + b.feature_sums
        fcount = None if a.feature_counts is None else a.feature_counts + b.feature_counts
        return CorrelationPartial(a.samples + b.samples, gram, pairs, fsum, fcount)

    def reads_twice(self, ctx: Context) -> bool:
        return ctx.wants(N.TOKEN_CORRELATION_CENTRED)

    def second_pass(self, partial: CorrelationPartial, ctx: Context) -> CentredPairs | None:
        """Under padding the centred r needs each token's mean first: a second read folds the pair
        sums of x - μ_t, μ_t the mean over the samples valid at t."""
        if partial.pairs is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return CentredPairs(self.name, partial.feature_sums / np.maximum(partial.feature_counts, 1)[:, None])

    def aggregate(self, partial: CorrelationPartial, ctx: Context) -> Result:
        return self.aggregate_twice(partial, None, ctx)

    def aggregate_twice(self, partial: CorrelationPartial, second: PairSums | None, ctx: Context) -> Result:
        arrays: dict[str, np.ndarray] = {}
        if ctx.wants(N.TOKEN_CORRELATION):
            corr = token_correlation(partial.gram) if partial.pairs is None else masked_token_correlation(partial.pairs)
            arrays |= {N.TOKEN_CORRELATION: corr, N.MEAN_TOKEN_CORRELATION: np.asarray(mean_lower_triangle(corr))}
        if ctx.wants(N.TOKEN_CORRELATION_CENTRED):
            if partial.pairs is None:
                corr = centred_token_correlation(partial.gram, partial.feature_sums, partial.samples)
            else:
                if second is None:
                    raise TgoError("token_correlation_centred on a padded store needs a second read of the unit; "
                                   "run it through the engine (tgo analyze, reduce_unit)")
                corr = masked_token_correlation(second)
            arrays |= {N.TOKEN_CORRELATION_CENTRED: corr,
                       N.MEAN_TOKEN_CORRELATION_CENTRED: np.asarray(mean_lower_triangle(corr))}
        return Result(arrays)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        centred = n_tokens * ctx.n_features * 8 if ctx.wants(N.TOKEN_CORRELATION_CENTRED) else 0
        return 4 * (n_tokens + 1) * n_tokens * 8 + centred
