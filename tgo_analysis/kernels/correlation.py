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
