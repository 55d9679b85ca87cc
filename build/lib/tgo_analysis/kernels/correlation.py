"""Inter-token Pearson correlation from float64 token Gram sums streamed over sample chunks.

For token t, v_t is its activations flattened over (sample, feature): a vector of N·D values.
Pearson r(t, u) needs only Σ v_t, Σ v_t·v_u and the count, all additive over sample chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GramSums:
    count: int  # N·D values per token vector
    sums: np.ndarray  # (T,) Σ v_t
    gram: np.ndarray  # (T, T) Σ v_t v_u


def token_gram_sums(x: np.ndarray) -> GramSums:
    """x (n, T, D) -> sums over this chunk (float64, one GEMM)."""
    x64 = np.asarray(x, dtype=np.float64)
    n, t, d = x64.shape
    flat = np.ascontiguousarray(x64.transpose(1, 0, 2)).reshape(t, n * d)
    return GramSums(n * d, flat.sum(axis=1), flat @ flat.T)


def merge_gram_sums(a: GramSums, b: GramSums) -> GramSums:
    return GramSums(a.count + b.count, a.sums + b.sums, a.gram + b.gram)


def token_correlation(g: GramSums) -> np.ndarray:
    """(T, T) Pearson matrix; NaN rows/cols for tokens with zero variance."""
    n = g.count
    cov = g.gram - np.outer(g.sums, g.sums) / n
    var = np.diag(cov).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(var > 0, 1.0 / np.sqrt(var), np.nan)
        corr = cov * scale[:, None] * scale[None, :]
    return np.clip(corr, -1.0, 1.0)


def mean_lower_triangle(corr: np.ndarray) -> float:
    """Mean of the strict lower triangle, over pairs where both tokens vary (NaN-aware)."""
    rows, cols = np.tril_indices(corr.shape[-1], k=-1)
    values = corr[..., rows, cols]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def centred_token_correlation(g: GramSums, feature_sums: np.ndarray, n_samples: int) -> np.ndarray:
    """(T, T) Pearson r of the per-feature-centred token vectors v_t - μ_t (μ_t (D,) the mean
    over samples, ``feature_sums`` (T, D) = Σ_i x_it): Σ_i (x_it - μ_t)·(x_iu - μ_u) =
    G_tu - F_t·F_u / N, and the centred vectors sum to zero, so r = C_tu / √(C_tt C_uu)."""
    f = np.asarray(feature_sums, dtype=np.float64)
    cov = g.gram - (f @ f.T) / n_samples
    var = np.diag(cov).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(var > 0, 1.0 / np.sqrt(var), np.nan)
        corr = cov * scale[:, None] * scale[None, :]
    return np.clip(corr, -1.0, 1.0)


@dataclass
class PairSums:
    """Masked Gram sums: token pair (t, u) over the samples valid at both (float64, (T, T) each).

    ``pairs[t, u]`` samples valid at both; ``sums[t, u]`` = Σ over them of Σ_f x_itf;
    ``squares[t, u]`` = Σ over them of ‖x_it‖²; ``gram[t, u]`` = Σ over them of x_it·x_iu.
    """

    n_features: int
    pairs: np.ndarray
    sums: np.ndarray
    squares: np.ndarray
    gram: np.ndarray


def pair_sums(x: np.ndarray, valid: np.ndarray) -> PairSums:
    """x (n, T, D), valid (n, T) -> pair sums of this chunk (padding zeroed, four GEMMs)."""
    m = np.asarray(valid, dtype=np.float64)
    x64 = np.where(np.asarray(valid, bool)[..., None], np.asarray(x, dtype=np.float64), 0.0)
    n, t, d = x64.shape
    flat = np.ascontiguousarray(x64.transpose(1, 0, 2)).reshape(t, n * d)
    s, q = x64.sum(axis=2), (x64 * x64).sum(axis=2)  # (n, T)
    return PairSums(d, m.T @ m, s.T @ m, q.T @ m, flat @ flat.T)


def unmasked_pair_sums(g: GramSums, n_samples: int) -> PairSums:
    """The pair sums that unmasked Gram sums of ``n_samples`` samples amount to (every pair valid)."""
    t = g.sums.shape[0]
    d = g.count // max(n_samples, 1)
    return PairSums(d, np.full((t, t), float(n_samples)), np.repeat(g.sums[:, None], t, axis=1),
                    np.repeat(np.diag(g.gram)[:, None], t, axis=1), g.gram.copy())


def merge_pair_sums(a: PairSums, b: PairSums) -> PairSums:
    return PairSums(a.n_features, a.pairs + b.pairs, a.sums + b.sums, a.squares + b.squares, a.gram + b.gram)


def masked_token_correlation(p: PairSums) -> np.ndarray:
    """(T, T) Pearson r of tokens t and u over the samples valid at both (their N_tu·D values);
    NaN where fewer than two such values or either side is constant there."""
    n = p.pairs * p.n_features
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = p.gram - p.sums * p.sums.T / n
        var = p.squares - p.sums**2 / n  # var[t, u]: token t over the samples valid at both
        denominator = np.sqrt(var * var.T)
        corr = np.where((n > 1) & (var > 0) & (var.T > 0), cov / denominator, np.nan)
    return np.clip(corr, -1.0, 1.0)
