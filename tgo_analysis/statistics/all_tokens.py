"""Metrics of all tokens concatenated into one (token x feature) vector per sample (SPEC 2, 3).

Exact ("gram"): the un-centred N x N Gram X Xᵀ is a sum over tokens, so each token pass
keeps its tokens' rows of every sample (store dtype) and adds their Gram when the pass ends
(``join_tokens``); the memory budget plans that stash like any accumulator. Truncated
("randomized", N large): the first read folds per-(token, feature) means and variances (Σλ, so the
tail the truncation misses still counts); then the engine reads the unit 2q + 2 more times
(``reads``, ``second_pass``, ``next_pass``: q power iterations of Halko et al.'s randomized SVD,
``kernels/randomized.py``), each read one product with the centred rows.

A sample is one point here, so padding cannot be left out position by position: padded
positions are set to zero (in both methods; the attrs say so), so whatever a model wrote at
padding never enters, and the same sequence with zeros or junk there gives the same spectrum.

SPEC 8: ``noise_floor_all`` (u² E‖x‖² / (3 T·D) of the concatenated vectors, u the stored dtype's
roundoff) and ``resolved_rank_all`` come with the spectrum; alpha and spectral flatness use the
resolved eigenvalues only (for a truncated spectrum, resolved within its top k).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels import randomized as R
from tgo_analysis.kernels.metrics import (
    TRUNCATED_METRICS,
    spectral_metrics,
    truncated_spectrum_metrics,
)
from tgo_analysis.kernels.noise_floor import noise_floor
from tgo_analysis.kernels.spectra import exact_trace, gram_spectrum
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
from tgo_analysis.statistics.masks import partial_mask
from tgo_analysis.statistics.token_spectra import PER_TOKEN
from tgo_store.errors import TgoError

GRAM_MAX_SAMPLES = 4096
METHODS = ("auto", "gram", "randomized", "off")
METHOD = Option("all_tokens", "auto", "all-token spectrum: auto, gram, randomized or off", str, choices=METHODS)
SVD_RANK = Option("svd_rank", 200, "rank of the randomized SVD for all tokens")
POWER_ITERS = Option("power_iters", 4, "power iterations of the randomized SVD (>= 4)")
GRAM_SLICE_BYTES = 64 << 20  # float64 rows converted at once when a pass adds its Gram


@dataclass(frozen=True)
class AllTokensParams:
    method: str  # "gram" or "randomized" (resolved from "auto")
    svd_rank: int = 200
    power_iters: int = 4
    roundoff: float | None = None  # u of the stored dtype (SPEC 8 noise floor); None: from the item size


def resolve_method(method: str, n_samples: int) -> str:
    if method in ("gram", "randomized"):
        return method
    return "gram" if n_samples <= GRAM_MAX_SAMPLES else "randomized"


def all_tokens_rank(params: AllTokensParams, n_samples: int, n_flat: int) -> int:
    """Length of the all-tokens spectrum: min(N, T·D), or the SVD rank when truncated."""
    n_all = min(n_samples, n_flat)
    return n_all if params.method == "gram" else min(params.svd_rank, n_all)


@dataclass
class AllTokensPartial:
    count: int = 0
    rows: list[np.ndarray] = field(default_factory=list)  # gram: this pass's (n, t, D) blocks
    gram: np.ndarray | None = None  # Σ over finished passes of X Xᵀ
    mean: np.ndarray | None = None  # randomized: per-(token, feature) mean and M2
    m2: np.ndarray | None = None
    sumsq: float = 0.0  # Σ over finished passes of M2
    square: float = 0.0  # randomized: Σ over finished passes of the un-centred Σ‖x‖² (noise floor)
    tokens: int = 0  # the first token of this partial's range
    means: dict[int, np.ndarray] = field(default_factory=dict)  # randomized, joined: each range's mean by first token


def centred_rows(block: Block, mean: np.ndarray) -> np.ndarray:
    """The block's zero-padded samples as concatenated (token x feature) rows, float64, centred by ``mean``."""
    x = zero_padding(block)
    return np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1) - mean


@dataclass(frozen=True)
class SketchRows:
    """A read that makes the rows of Y = A Z (A the centred concatenated samples): (samples, rows) per block."""

    name: str
    mean: np.ndarray
    z: np.ndarray
    power_left: int  # power iterations still to run after this read

    def fold(self, acc: list | None, block: Block, ctx: Context) -> list:
        return [*(acc or []), (block.samples, R.project_rows(centred_rows(block, self.mean), self.z))]

    def combine(self, a: list, b: list) -> list:
        return a + b

    def then(self, partial: list) -> SketchBack:
        samples = np.concatenate([s for s, _ in partial])
        order = np.argsort(samples, kind="stable")
        y = np.concatenate([rows for _, rows in partial])[order]
        return SketchBack(self.name, self.mean, R.orthonormal(y), samples[order], self.power_left)


@dataclass(frozen=True)
class SketchBack:
    """A read that sums Aᵀ Q over the blocks (Q orthonormal, one row per sample)."""

    name: str
    mean: np.ndarray
    q: np.ndarray
    samples: np.ndarray  # the sample index of each row of q, ascending
    power_left: int

    def fold(self, acc: np.ndarray | None, block: Block, ctx: Context) -> np.ndarray:
        rows = np.searchsorted(self.samples, block.samples)
        share = R.project_back(centred_rows(block, self.mean), self.q[rows])
        return share if acc is None else acc + share

    def combine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def then(self, partial: np.ndarray) -> SketchRows | None:
        """The next power iteration's read, or None: ``partial`` (Aᵀ Q) is final."""
        return SketchRows(self.name, self.mean, partial, self.power_left - 1) if self.power_left > 0 else None


def zero_padding(block: Block) -> np.ndarray:
    """The block's activations with padded positions set to zero (the block itself without padding)."""
    valid = partial_mask(block)
    return block.x if valid is None else np.where(valid[..., None], block.x, 0).astype(block.x.dtype)


@dataclass(frozen=True)
class AllTokens(StatisticBase):
    name: str = N.ALL_TOKENS
    metrics: tuple[str, ...] = (N.ALL_TOKENS,)
    token_split: bool = True
    joins_tokens: bool = True
    aliases: ClassVar[Mapping[str, str]] = {N.all_tokens(m): N.ALL_TOKENS for m in (
        N.EIGENVALUES, *PER_TOKEN, N.ALPHA_R2, N.NOISE_FLOOR, N.RESOLVED_RANK)}
    options = (METHOD, SVD_RANK, POWER_ITERS, FIT_RANGE)

    def _params(self, ctx: Context) -> AllTokensParams:
        given = ctx.params.get(self.name)
        return given if isinstance(given, AllTokensParams) else AllTokensParams("gram")

    def enabled(self, ctx: Context) -> bool:
        return ctx.option(METHOD) != "off"

    def validate(self, ds: Any, ctx: Context) -> None:
        method, power_iters = METHOD.check(ctx.option(METHOD)), int(ctx.option(POWER_ITERS))
        if power_iters < 4 and method != "gram":
            raise TgoError(f"--power-iters {power_iters} is below 4; truncated spectra without power iterations "
                           "inflate alpha")

    def prepare(self, ds: Any, ctx: Context) -> AllTokensParams:
        given = ctx.params.get(self.name)
        if isinstance(given, AllTokensParams):
            return given
        return AllTokensParams(resolve_method(ctx.option(METHOD), ctx.n_samples), int(ctx.option(SVD_RANK)),
                               int(ctx.option(POWER_ITERS)), B.store_roundoff(ds))

    def rank_length(self, ctx: Context) -> int:
        return all_tokens_rank(self._params(ctx), ctx.n_samples, ctx.n_tokens * ctx.n_features)

    def attrs(self, ctx: Context) -> dict[str, Any]:
        p = self._params(ctx)
        return {"all_tokens_method": p.method, "svd_rank": p.svd_rank, "power_iters": p.power_iters,
                "all_tokens_padding": "padded positions (attention_mask false) are zeros in the concatenated "
                "sample vectors: every sample enters, padding contributes nothing but its zeros"}

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        full = self._params(ctx).method == "gram"
        names = (*PER_TOKEN, N.ALPHA_R2) if full else TRUNCATED_METRICS
        return (Variable(N.all_tokens(N.EIGENVALUES), (N.RANK,), (ctx.n_rank,)),
                *(Variable(N.all_tokens(m), (), ()) for m in names),
                *B.floor_variables((), (), N.ALL_TOKENS_SUFFIX, counts=False))

    def chunk(self, block: Block, ctx: Context) -> AllTokensPartial:
        x = zero_padding(block)
        if self._params(ctx).method == "gram":
            return AllTokensPartial(x.shape[0], rows=[np.array(x)])
        mean = x.mean(axis=0, dtype=np.float64)
        m2 = ((np.asarray(x, dtype=np.float64) - mean) ** 2).sum(axis=0)
        return AllTokensPartial(block.x.shape[0], mean=mean, m2=m2, tokens=block.tokens[0])

    def combine(self, a: AllTokensPartial, b: AllTokensPartial) -> AllTokensPartial:
        if b.mean is not None:  # Chan's merge of per-value variances
            n = a.count + b.count
            delta = b.mean - a.mean
            a.m2 += b.m2 + delta**2 * (a.count * b.count / n)
            a.mean += delta * (b.count / n)
        a.rows.extend(b.rows)
        a.count += b.count
        return a

    def join_tokens(self, a: AllTokensPartial | None, b: AllTokensPartial) -> AllTokensPartial:
        """Fold a finished token range into the running total (partials of disjoint tokens)."""
        a = a or AllTokensPartial(b.count)
        if b.rows:
            n, d = b.count, b.rows[0].shape[-1]
            step = max(1, GRAM_SLICE_BYTES // (n * d * 8))
            for lo in range(0, b.rows[0].shape[1], step):
                x = np.concatenate([r[:, lo:lo + step] for r in b.rows]).astype(np.float64).reshape(n, -1)
                a.gram = x @ x.T if a.gram is None else a.gram + x @ x.T
            b.rows.clear()
        if b.m2 is not None:
            a.means[b.tokens] = b.mean
            a.sumsq += float(b.m2.sum())
            a.square += float(b.m2.sum()) + b.count * float((b.mean**2).sum())
        return a

    def aggregate(self, partial: AllTokensPartial, ctx: Context) -> Result:
        params = self._params(ctx)
        n_flat = ctx.n_tokens * ctx.n_features
        square = float(np.trace(partial.gram)) if params.method == "gram" else partial.square
        floor = float(noise_floor(B.roundoff(ctx, params), square / max(partial.count, 1), n_flat))
        if params.method == "gram":
            eigs = gram_spectrum(partial.gram, partial.count)[:min(partial.count, n_flat)]
            metrics = spectral_metrics(eigs, n_flat, ctx.fit_range, floor)
            names: tuple[str, ...] = (*PER_TOKEN, N.ALPHA_R2)
        else:
            raise ValueError("the randomized all-tokens spectrum is aggregated after its reads (aggregate_twice)")
        return self._arrays(eigs, metrics, names, floor, ctx)

    def reads(self, ctx: Context) -> int:
        params = self._params(ctx)
        return 1 if params.method == "gram" else 2 * params.power_iters + 3

    def reads_twice(self, ctx: Context) -> bool:
        return self.reads(ctx) > 1

    def second_pass(self, partial: AllTokensPartial, ctx: Context) -> SketchRows:
        """The first sketch read, Y = A Ω, centred by the first read's means."""
        params = self._params(ctx)
        mean = np.concatenate([partial.means[lo] for lo in sorted(partial.means)]).reshape(-1)
        omega = R.gaussian_sketch(mean.size, R.sketch_width(params.svd_rank, ctx.n_samples, mean.size), ctx.seed)
        return SketchRows(self.name, mean, omega, params.power_iters)

    def next_pass(self, fold: SketchRows | SketchBack, partial: Any, ctx: Context) -> SketchRows | SketchBack | None:
        return fold.then(partial)

    def aggregate_twice(self, partial: AllTokensPartial, second: Any, ctx: Context) -> Result:
        """The truncated spectrum from the last read's Aᵀ Q, with Σλ and the noise floor of the first read."""
        params = self._params(ctx)
        n_flat = ctx.n_tokens * ctx.n_features
        floor = float(noise_floor(B.roundoff(ctx, params), partial.square / max(partial.count, 1), n_flat))
        eigs = R.top_eigenvalues(second, int(min(params.svd_rank, partial.count, n_flat)), partial.count)
        metrics = truncated_spectrum_metrics(eigs, float(exact_trace(partial.sumsq, partial.count)), n_flat,
                                                 ctx.fit_range, floor)
        return self._arrays(eigs, metrics, TRUNCATED_METRICS, floor, ctx)

    def _arrays(self, eigs: np.ndarray, metrics: Mapping[str, Any], names: tuple[str, ...], floor: float,
                ctx: Context) -> Result:
        padded = np.full(max(ctx.n_rank, eigs.size), np.nan)
        padded[:eigs.size] = eigs
        arrays = {N.all_tokens(m): np.asarray(metrics[m]) for m in names}
        arrays[N.all_tokens(N.EIGENVALUES)] = padded
        arrays[N.all_tokens(N.NOISE_FLOOR)] = np.asarray(floor)
        arrays[N.all_tokens(N.RESOLVED_RANK)] = np.asarray(metrics[N.RESOLVED_RANK])
        return Result(arrays)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        if self._params(ctx).method == "gram":
            return ctx.n_samples * n_tokens * ctx.n_features * ctx.itemsize + 2 * ctx.n_samples**2 * 8
        return 2 * n_tokens * ctx.n_features * 8
