"""Per-token covariance spectra and their metrics (SPEC 3): co-moments folded over samples.

``fold`` merges each block's per-token co-moment into the accumulator as soon as it is formed
(``moments.fold_moments``), so the only full-size partial alive is the accumulator itself. With
a device backend (``--device cuda``) the same fold and the eigendecomposition run there, as its
torch kernels (``token_spectra_torch``).
Padding never enters: with a partial ``attention_mask`` token t folds only the samples valid at
t (per-token counts, ``moments.fold_masked_moments``); a token with fewer than two valid samples
has NaN metrics (reason ``REASON_FEW_SAMPLES``). Blocks without padding keep the fast path.
SPEC 8: every spectrum comes with its storage ``noise_floor``, ``resolved_rank`` and ``n_samples``,
and each wanted metric of ``N.ISOTROPIC_METRICS`` with its ``_isotropic`` baseline (``baselines``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.metrics import REASON_FEW_SAMPLES, spectral_metrics
from tgo_analysis.kernels.moments import (
    Moments,
    chunk_moments,
    counts_per_token,
    fold_masked_moments,
    fold_moments,
    masked_chunk_moments,
    merge_moments_into,
    per_token,
    symmetrize,
)
from tgo_analysis.kernels.noise_floor import moments_mean_square_norm, noise_floor
from tgo_analysis.kernels.spectra import covariance_eigenvalues
from tgo_analysis.statistics import baselines as B
from tgo_analysis.statistics.base import (
    FIT_RANGE,
    Block,
    Context,
    Derived,
    Option,
    Result,
    StatisticBase,
    Variable,
)
from tgo_analysis.statistics.masks import partial_mask
from tgo_analysis.statistics.token_spectra_torch import covariance_eigenvalues as torch_eigenvalues
from tgo_analysis.statistics.token_spectra_torch import fold_moments as torch_fold
from tgo_store.errors import TgoError

TOKEN_SPECTRA = "token_spectra"  # registry key (a statistic, not a result name)
PER_TOKEN = (N.ALPHA, N.EFFECTIVE_RANK, N.STABLE_RANK, N.PARTICIPATION_RATIO, N.SPECTRAL_ENTROPY,
             N.SPECTRAL_FLATNESS, N.TOP1_SHARE)
FLOOR_ROWS = (N.NOISE_FLOOR, N.RESOLVED_RANK, N.N_SAMPLES)  # SPEC 8: with every per-token spectrum


CLUSTERS = Option("n_clusters", 4, "k-means clusters of the per-token trajectories (alpha_cluster)", int,
                  spelling="--clusters")
UMAP = Option("use_umap", False, "embed the trajectories with UMAP before k-means (alpha_cluster)", bool,
              spelling="--umap")


def alpha_clusters(result: Any, settings: Mapping[str, Any]) -> Any:
    """alpha_cluster: k-means of each token's alpha across layers at the last analysed checkpoint (the
    last with any alpha: ``analyze(checkpoints=[1])`` of a longer store clusters checkpoint 1)."""
    from tgo_analysis.statistics.clusters import cluster_alpha_trajectories

    k = int(settings.get(CLUSTERS.name, CLUSTERS.default))
    use_umap = bool(settings.get(UMAP.name, UMAP.default))
    alpha = result[N.ALPHA]
    analysed = np.flatnonzero(np.isfinite(alpha.values).reshape(alpha.sizes[N.CHECKPOINT], -1).any(axis=1))
    at = int(analysed[-1]) if analysed.size else alpha.sizes[N.CHECKPOINT] - 1
    clusters = cluster_alpha_trajectories(alpha.isel({N.CHECKPOINT: at}), k, use_umap=use_umap,
                                          seed=int(settings["seed"]))
    clusters.attrs["description"] = (f"k-means of each token's alpha across layers at checkpoint index {at} (the "
                                     f"last with any alpha), standardised per layer, k={k}, umap={use_umap}, "
                                     "ids ordered by mean alpha; -1 = trajectory with NaN")
    clusters.attrs["checkpoint_index"] = at
    return clusters


@dataclass(frozen=True)
class TokenSpectra(StatisticBase):
    name: str = TOKEN_SPECTRA
    metrics: tuple[str, ...] = (N.EIGENVALUES, *PER_TOKEN, *FLOOR_ROWS, *B.isotropic_names())
    token_split: bool = True
    aliases: ClassVar[Mapping[str, str]] = {N.ALPHA_R2: N.ALPHA}
    options = (B.ISOTROPIC_DRAWS, FIT_RANGE, CLUSTERS, UMAP)
    derived: tuple[Derived, ...] = (Derived(N.ALPHA_CLUSTER, N.ALPHA, alpha_clusters),)

    def prepare(self, ds: object, ctx: Context) -> dict[str, float]:
        given = ctx.params.get(self.name)
        return given if isinstance(given, dict) else {B.ROUNDOFF: B.store_roundoff(ds)}

    def attrs(self, ctx: Context) -> dict[str, object]:
        return {**B.baseline_attrs(ctx), "stored_roundoff": B.roundoff(ctx, ctx.params.get(self.name))}

    def validate(self, ds: object, ctx: Context) -> None:
        """Refuse an alpha fit range that is malformed or lies beyond every token's spectrum."""
        B.check_draws(ctx)
        if not ctx.wants(N.ALPHA):
            return
        lo, hi = ctx.fit_range
        if lo < 1 or hi < lo + 4:
            raise TgoError(f"alpha fit range {lo}:{hi} is invalid; give FIRST:LAST ranks with LAST >= FIRST + 4, "
                           "e.g. 11:100")
        n, d = ctx.n_samples, ctx.n_features
        max_rank = min(n - 1, d) - 10
        if max_rank < lo + 4:
            need = lo + 14
            raise TgoError(f"alpha fit range {lo}:{hi} lies beyond the spectrum: the covariance has at most "
                           f"{min(n - 1, d)} nonzero eigenvalues (samples {n}, features {d}); alpha needs at least "
                           f"{need + 1} samples and {need} features, or a lower range such as "
                           f"--fit-range 2:{max(6, max_rank)}")

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
        if any(ctx.wants(m) for m in self.metrics):
            out += B.floor_variables((N.TOKEN,), (t,))
        out += [Variable(N.isotropic(m), (N.TOKEN,), (t,)) for m in B.isotropic_wanted(ctx)]
        return tuple(out)

    def chunk(self, block: Block, ctx: Context) -> Moments:
        valid = partial_mask(block)
        return chunk_moments(block.x) if valid is None else masked_chunk_moments(block.x, valid)

    def fold(self, acc: Moments | None, block: Block, ctx: Context) -> Moments:
        valid = partial_mask(block)
        if ctx.backend is not None:
            return ctx.backend.run(torch_fold, acc, block.x, valid)
        if valid is None and (acc is None or not per_token(acc.count)):
            return fold_moments(acc, block.x)
        return fold_masked_moments(acc, block.x, np.ones(block.x.shape[:2], bool) if valid is None else valid)

    def combine(self, a: Moments, b: Moments) -> Moments:
        return merge_moments_into(a, b)

    def aggregate(self, partial: Moments, ctx: Context) -> Result:
        counts = counts_per_token(partial.count, partial.mean.shape[0]) if per_token(partial.count) else None
        square_norm = moments_mean_square_norm(partial.mean, partial.comoment, partial.count)
        if ctx.backend is not None:
            return spectra_result(ctx.backend.run(torch_eigenvalues, partial), ctx, counts, square_norm,
                                  partial.count)
        symmetrize(partial)
        if counts is None:
            partial.comoment /= partial.count - 1  # the covariance, in place: no second (T, D, D) array
        else:
            partial.comoment /= np.maximum(counts - 1, 1)[:, None, None]
        return spectra_result(covariance_eigenvalues(partial.comoment), ctx, counts, square_norm, partial.count)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return n_tokens * (ctx.n_features + 1) * ctx.n_features * 8

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        """The fused fold holds only the block's float64 means and one token's centred rows."""
        return rows * ctx.n_features * 8 + ctx.n_tokens * ctx.n_features * 8


def spectra_result(eigs: np.ndarray, ctx: Context, counts: np.ndarray | None = None,
                   square_norm: np.ndarray | None = None, count: object = None) -> Result:
    """Eigenvalues (T, D), NaN-padded to the shared rank, and the SPEC 3 metrics of each;
    tokens with fewer than two valid samples (``counts``) are NaN with their reason. With
    ``square_norm`` (E‖x‖² per token) the SPEC 8 floor rules apply and their rows are added."""
    few = None if counts is None else counts < 2
    if few is not None and few.any():
        eigs = np.where(few[:, None], 0.0, eigs)
    params = ctx.params.get(TOKEN_SPECTRA)
    floor = None if square_norm is None else noise_floor(B.roundoff(ctx, params), square_norm, ctx.n_features)
    metrics = spectral_metrics(eigs, ctx.n_features, ctx.fit_range, floor)
    arrays: dict[str, np.ndarray] = {m: metrics[m] for m in (*PER_TOKEN, N.ALPHA_R2)}
    arrays[N.METRIC_REASON] = metrics["reason"]
    if floor is not None:
        n = counts if counts is not None else np.full(eigs.shape[0], int(count or 0), np.int64)
        arrays |= {N.NOISE_FLOOR: floor, N.RESOLVED_RANK: metrics[N.RESOLVED_RANK], N.N_SAMPLES: n}
        arrays |= B.isotropic_arrays(n, B.isotropic_wanted(ctx), ctx, params)
    if few is not None and few.any():
        eigs = np.where(few[:, None], np.nan, eigs)
        arrays = {m: np.where(few, np.nan, v) if v.dtype.kind == "f" else v for m, v in arrays.items()
                  if m != N.METRIC_REASON} | {
            N.METRIC_REASON: np.where(few, REASON_FEW_SAMPLES, metrics["reason"]).astype(np.int8)}
    padded = np.full((eigs.shape[0], max(ctx.n_rank, eigs.shape[1])), np.nan)
    padded[:, :eigs.shape[1]] = eigs
    arrays[N.EIGENVALUES] = padded
    return Result(arrays)
