"""Per-token covariance spectra and their metrics (SPEC 3): co-moments folded over samples.

``fold`` merges each block's per-token co-moment into the accumulator as soon as it is formed
(``moments.fold_moments``), so the only full-size partial alive is the accumulator itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.metrics import spectral_metrics
from tgo_analysis.moments import (
    Moments,
    chunk_moments,
    fold_moments,
    merge_moments_into,
    symmetrize,
)
from tgo_analysis.reductions.base import Block, Context, Result, Variable
from tgo_analysis.spectra import covariance_eigenvalues

TOKEN_SPECTRA = "token_spectra"  # registry key (a statistic, not a result name)
PER_TOKEN = (N.ALPHA, N.EFFECTIVE_RANK, N.STABLE_RANK, N.PARTICIPATION_RATIO, N.SPECTRAL_ENTROPY,
             N.SPECTRAL_FLATNESS, N.TOP1_SHARE)


@dataclass(frozen=True)
class TokenSpectra:
    name: str = TOKEN_SPECTRA
    metrics: tuple[str, ...] = (N.EIGENVALUES, *PER_TOKEN)
    token_split: bool = True

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        t = ctx.n_tokens
        out = []
        if ctx.wants(N.EIGENVALUES):
            out.append(Variable(N.EIGENVALUES, (N.TOKEN, N.RANK), (t, ctx.n_rank)))
        out += [Variable(m, (N.TOKEN,), (t,)) for m in PER_TOKEN if ctx.wants(m)]
        if ctx.wants(N.ALPHA):
            out.append(Variable(N.ALPHA_R2, (N.TOKEN,), (t,)))
        if any(ctx.wants(m) for m in PER_TOKEN):
            out.append(Variable(N.METRIC_REASON, (N.TOKEN,), (t,), np.int8, -1))
        return tuple(out)

    def chunk(self, block: Block, ctx: Context) -> Moments:
        return chunk_moments(block.x)

    def fold(self, acc: Moments | None, block: Block, ctx: Context) -> Moments:
        return fold_moments(acc, block.x)

    def combine(self, a: Moments, b: Moments) -> Moments:
        return merge_moments_into(a, b)

    def aggregate(self, partial: Moments, ctx: Context) -> Result:
        symmetrize(partial)
        partial.comoment /= partial.count - 1  # the covariance, in place: no second (T, D, D) array
        return spectra_result(covariance_eigenvalues(partial.comoment), ctx)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return n_tokens * (ctx.n_features + 1) * ctx.n_features * 8

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        """The fused fold holds only the block's float64 means and one token's centred rows."""
        return rows * ctx.n_features * 8 + ctx.n_tokens * ctx.n_features * 8


def spectra_result(eigs: np.ndarray, ctx: Context) -> Result:
    """Eigenvalues (T, D), NaN-padded to the shared rank, and the SPEC 3 metrics of each."""
    metrics = spectral_metrics(eigs, ctx.n_features, ctx.fit_range)
    arrays: dict[str, np.ndarray] = {m: metrics[m] for m in (*PER_TOKEN, N.ALPHA_R2)}
    arrays[N.METRIC_REASON] = metrics["reason"]
    padded = np.full((eigs.shape[0], max(ctx.n_rank, eigs.shape[1])), np.nan)
    padded[:, :eigs.shape[1]] = eigs
    arrays[N.EIGENVALUES] = padded
    return Result(arrays)


@dataclass(frozen=True)
class DeviceTokenSpectra(TokenSpectra):
    """The same spectra streamed through a torch device (``tgo_analysis.device``): the layer is
    read there in one go, so the CPU fold does nothing; ``ctx.params[name]`` = (LazySlab, device)."""

    token_split: bool = False

    def chunk(self, block: Block, ctx: Context) -> None:
        return None

    def fold(self, acc: None, block: Block, ctx: Context) -> None:
        return None

    def combine(self, a: None, b: None) -> None:
        return None

    def aggregate(self, partial: None, ctx: Context) -> Result:
        from tgo_analysis.device import layer_spectra

        lazy, device = ctx.params[self.name]
        return spectra_result(layer_spectra(lazy, device)[N.EIGENVALUES], ctx)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 0
