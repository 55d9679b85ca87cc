"""Pooled geometry: every valid (sample, token) vector of a layer as one point (pure numpy).

The per-token path treats each position as its own distribution over samples; language
anisotropy (Razzhigaev et al., Ethayarajh) is measured on the cloud of ALL token vectors of a
layer instead. This module gives the chunk steps of that reduction, streamed and exact:
masked co-moments merged in float64 with ``tgo_analysis.kernels.moments`` (Chan, Golub & LeVeque), the
pooled unit-vector sum for cosine anisotropy, and a seeded position subsample for TwoNN.

Which positions enter (``tgo_store.store.validity.PositionChoice``, shared with the loader): padding never. Special tokens and the first
position of each sequence enter by default, as in the literature this reproduces: Razzhigaev
et al.'s llm-microscope (``calculate_anisotropy_torch``) takes the hidden states of every
position the tokenizer returns, BOS/CLS/SEP included, and Ethayarajh (2019) every occurrence.
Decoders put massive activations on the first position, which can dominate λ₁ from the middle
layers on, so both are optional exclusions (``exclude_special``, ``exclude_first``) and the
report shows the profile with and without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgo_analysis.kernels.metrics import DEFAULT_FIT_RANGE, cosine_anisotropy, spectral_metrics
from tgo_analysis.kernels.moments import (
    Moments,
    chunk_moments,
    covariance,
    merge_moments,
    unit_vector_sum,
)
from tgo_analysis.kernels.spectra import covariance_eigenvalues

POINT_ROWS = 16384  # points centred per GEMM: bounds the float64 scratch to POINT_ROWS x D
DEFAULT_ID_POINTS = 4096


def row_slices(n_samples: int, n_tokens: int) -> list[slice]:
    """Sample ranges of about POINT_ROWS positions: bounds every float64 scratch of a chunk step."""
    step = max(1, POINT_ROWS // max(n_tokens, 1))
    return [slice(lo, min(n_samples, lo + step)) for lo in range(0, n_samples, step)]


def _empty(n_features: int) -> Moments:
    return Moments(0, np.zeros(n_features), np.zeros((n_features, n_features)))


def point_moments(points: np.ndarray) -> Moments:
    """Moments of points (k, D), k may be 0: mean (D,), co-moment (D, D), float64."""
    if points.shape[0] == 0:
        return _empty(points.shape[-1])
    m = chunk_moments(points[:, None, :])
    return Moments(m.count, m.mean[0], m.comoment[0])


def pooled_moments(x: np.ndarray, valid: np.ndarray) -> Moments:
    """Chunk step: moments of the valid points of a block x (n, T, D), valid (n, T).

    Rows of samples are gathered a few thousand points at a time and merged, so the float64
    scratch stays POINT_ROWS x D whatever the block size.
    """
    n, n_tokens, n_features = x.shape
    total = _empty(n_features)
    for rows in row_slices(n, n_tokens):
        total = merge_moments(total, point_moments(np.asarray(x[rows])[valid[rows]]))
    return total


def pooled_unit_sum(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """Chunk step of pooled cosine anisotropy: (Σ x/‖x‖ over valid points (D,), count)."""
    n, n_tokens, n_features = x.shape
    total = np.zeros(n_features)
    for rows in row_slices(n, n_tokens):
        points = np.asarray(x[rows])[valid[rows]]
        if points.shape[0]:
            total += unit_vector_sum(points[:, None, :])[0]
    return total, int(valid.sum())


def position_keys(samples: np.ndarray, tokens: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(n, T) uint64 pseudo-random keys of positions (sample index, token index), seeded.

    splitmix64 of (sample << 32 | token) + seed: a key depends only on the position, so the
    k smallest keys are the same uniform subset however the samples were chunked.
    """
    sample = np.asarray(samples, dtype=np.uint64)[:, None]
    token = np.arange(tokens[0], tokens[1], dtype=np.uint64)[None, :]
    z = (sample << np.uint64(32)) | token
    z = z + np.uint64(((seed + 1) * 0x9E3779B97F4A7C15) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass
class PointSample:
    """A bottom-k sample of pooled points: the k valid positions with the smallest keys."""

    keys: np.ndarray  # (k,) uint64, ascending
    points: np.ndarray  # (k, D) in the store dtype
    labels: np.ndarray  # (k,) int64 per-point label (token id, -1 when none)
    size: int  # k: the most points this sample keeps


def _bottom(keys: np.ndarray, points: np.ndarray, labels: np.ndarray, k: int) -> PointSample:
    order = np.argsort(keys, kind="stable")[:k]
    return PointSample(keys[order], points[order], labels[order], int(k))


def sample_points(x: np.ndarray, valid: np.ndarray, keys: np.ndarray, k: int,
                  labels: np.ndarray | None = None) -> PointSample:
    """Chunk step of the seeded subsample: the k valid points of block x (n, T, D) with the
    smallest keys (``position_keys``), with their labels (n, T) (e.g. token ids)."""
    flat = np.flatnonzero(valid)
    chosen = flat[np.argsort(keys.ravel()[flat], kind="stable")[:k]]
    rows, cols = np.unravel_index(chosen, valid.shape)
    lab = np.full(chosen.size, -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)[rows, cols]
    return _bottom(keys[rows, cols], np.asarray(x[rows, cols]), lab, k)


def merge_point_samples(a: PointSample, b: PointSample) -> PointSample:
    """Combine step: the k smallest keys of both (a uniform subset of the union)."""
    return _bottom(np.concatenate([a.keys, b.keys]), np.concatenate([a.points, b.points]),
                   np.concatenate([a.labels, b.labels]), min(a.size, b.size))


def pooled_spectrum_metrics(m: Moments, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE,
                            floor: float | None = None) -> dict[str, np.ndarray]:
    """Aggregate step: eigenvalues (D,) and every section 3 metric of the pooled covariance
    (with SPEC 8's resolved-rank rules when a storage noise ``floor`` is given)."""
    n_features = m.mean.shape[-1]
    eigs = np.zeros(n_features) if m.count < 2 else covariance_eigenvalues(covariance(m))
    out = spectral_metrics(eigs, n_features, fit_range, floor)
    out["eigenvalues"] = eigs
    return out


def pooled_cosine_anisotropy(unit_sum: np.ndarray, count: int) -> float:
    """Aggregate step: Ethayarajh's mean pairwise cosine over the pooled points."""
    return float(cosine_anisotropy(unit_sum, count)) if count > 1 else float("nan")
