"""Seeded bootstrap over samples (pure numpy): Poisson weights per sample, normal intervals.

A ratio statistic Σ_s a_s / Σ_s b_s over samples s (sequences or images) is resampled with
weights w_s ~ Poisson(1), one per replicate (the Poisson bootstrap, Hanley & MacGibbon 2006;
Chamandy et al. 2012): as the number of samples grows it matches the multinomial bootstrap,
and it streams. The weights of sample s come from a generator seeded by (seed, s) only, so a
replicate's sums are the same however the samples were chunked, and combining is addition.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_REPLICATES = 20  # each replicate refits the tangent basis: see statistics.tangent_fit
BOUNDS = (0.05, 0.95)
Z_BOUND = 1.6448536269514722  # the standard normal's 95 % quantile: a 5-95 % normal interval
BOUND_NAMES = ("low", "high")
WEIGHT_STREAM = 0xB007  # separates the bootstrap generator from every other (seed, sample) stream


def poisson_weights(samples: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """(n, replicates) float64 Poisson(1) weights of the sample indices ``samples`` (n,); one draw per
    distinct sample (a fit subsample repeats its samples once per position)."""
    distinct, inverse = np.unique(np.asarray(samples), return_inverse=True)
    out = np.zeros((len(distinct), replicates))
    for i, s in enumerate(distinct):
        out[i] = _sample_weights(int(seed), int(s), int(replicates))
    return out[inverse.reshape(-1)]


@lru_cache(maxsize=1 << 16)
def _sample_weights(seed: int, sample: int, replicates: int) -> np.ndarray:
    """One sample's weights (read-only): the fold, the refits and the scoring of every unit ask for the
    same samples', and seeding a generator costs more than the draws."""
    out = np.random.default_rng([WEIGHT_STREAM, seed, sample]).poisson(1.0, replicates).astype(np.float64)
    out.flags.writeable = False
    return out


def replicate_sums(per_sample: np.ndarray, samples: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """(replicates, m): Σ_s w_s · per_sample[s] for per-sample sums (n, m) of samples (n,)."""
    if replicates == 0:
        return np.zeros((0, per_sample.shape[1]))
    return poisson_weights(samples, replicates, seed).T @ np.asarray(per_sample, dtype=np.float64)


def normal_interval(estimate: float, replicates: np.ndarray) -> np.ndarray:
    """(2,) the 5-95 % normal bootstrap interval estimate ± z · SD of the replicate values (NaN-safe).

    With the few replicates a refitting bootstrap can afford (each one fits a basis), the SD is a
    steadier summary than the 5th and 95th order statistics of 20 values (Efron & Tibshirani 1993,
    ch. 13); the interval is centred on the full-data estimate.
    """
    values = np.asarray(replicates, np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2 or not np.isfinite(estimate):
        return np.full(2, np.nan)
    half = Z_BOUND * float(np.std(values, ddof=1))
    return np.array([estimate - half, estimate + half])
