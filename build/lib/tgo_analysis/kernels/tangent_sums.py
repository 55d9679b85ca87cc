"""The streamed partial of the tangent statistic (pure numpy, float64): one block of held-out positions.

Everything the tangent rows of SPEC section 5 need, from one read of activations and gradients:

- G = Σ g gᵀ (energies of any frame, optimal energy, alignments);
- Σ‖Q_Tᵀx‖², Σ‖x‖² (activation_energy);
- Σ of the local, null and radial shares per position (``tangent_local``) and their counts;
- per-sample sums [‖Q_Tᵀg‖², ‖Q_Pᵀg‖², ‖g‖², local share, local count] weighted into bootstrap
  replicates (``bootstrap``), so the intervals stream;
- per frequency bucket, the held-out positions with the smallest seeded keys and their
  [‖Q_Tᵀg‖², ‖Q_Pᵀg‖², ‖g‖², ‖Q_Nᵀg‖² per control draw]: an equal-count subsample per bucket.

Combining is addition (and a bottom-k merge per bucket), so chunking changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tgo_analysis.kernels.bootstrap import replicate_sums
from tgo_analysis.kernels.pooling import position_keys, row_slices
from tgo_analysis.kernels.tangent_local import (
    active_atoms,
    nonnegative_codes,
    projected_shares,
    radial_shares,
)

# columns of the per-sample sums behind the bootstrap
T_IN, P_IN, NORM, LOCAL, LOCAL_COUNT = range(5)
N_SAMPLE_SUMS = 5
# columns of a frequency subsample's values (then one per control draw)
F_T, F_P, F_NORM = range(3)
NULL_STREAM, FREQUENCY_STREAM = 0x4E55, 0xF4E0  # key seeds of the local null pairing and the bucket subsample


@dataclass(frozen=True)
class SumPlan:
    """What one unit's partial collects (a statistic asks only for what its metrics need)."""

    tangent: np.ndarray  # Q_T (D, k)
    pca: np.ndarray  # Q_P (D, k)
    controls: np.ndarray  # (draws, D, k)
    solver: object | None = None  # CodeSolver: None skips the local test
    fit_active: np.ndarray | None = None  # (n_fit, r) bool: the null's pool of active sets
    active_fraction: float = 0.5
    replicates: int = 0
    n_buckets: int = 0
    frequency_count: int = 0
    seed: int = 0


@dataclass
class TangentSums:
    moment: np.ndarray  # (D, D)
    count: int = 0
    activation: np.ndarray = field(default_factory=lambda: np.zeros(2))  # Σ‖Q_Tᵀx‖², Σ‖x‖²
    local: np.ndarray = field(default_factory=lambda: np.zeros(5))  # Σ local, Σ null, Σ radial, n local, n radial
    replicates: np.ndarray = field(default_factory=lambda: np.zeros((0, N_SAMPLE_SUMS)))
    bucket_keys: list = field(default_factory=list)  # per bucket (m,) uint64 ascending
    bucket_values: list = field(default_factory=list)  # per bucket (m, 3 + draws)
    keep: int = 0  # positions each bucket's subsample keeps


def empty_sums(plan: SumPlan) -> TangentSums:
    d = plan.tangent.shape[0]
    width = 3 + plan.controls.shape[0]
    return TangentSums(np.zeros((d, d)), replicates=np.zeros((plan.replicates, N_SAMPLE_SUMS)),
                       bucket_keys=[np.zeros(0, np.uint64) for _ in range(plan.n_buckets)],
                       bucket_values=[np.zeros((0, width)) for _ in range(plan.n_buckets)],
                       keep=plan.frequency_count)


def _squares(rows: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return ((rows @ basis) ** 2).sum(axis=-1)


def _bottom(keys: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")[:k]
    return keys[order], values[order]


def block_sums(x: np.ndarray, gradients: np.ndarray, valid: np.ndarray, samples: np.ndarray,
               tokens: tuple[int, int], plan: SumPlan, buckets: np.ndarray | None = None) -> TangentSums:
    """Chunk step for one block x, gradients (n, T, D) over its ``valid`` held-out positions (n, T)."""
    out = empty_sums(plan)
    n, n_tokens, _ = x.shape
    per_sample = np.zeros((n, N_SAMPLE_SUMS))
    null_keys = position_keys(samples, tokens, plan.seed + NULL_STREAM) if plan.solver is not None else None
    bucket_keys = position_keys(samples, tokens, plan.seed + FREQUENCY_STREAM) if buckets is not None else None
    flat_controls = plan.controls.transpose(1, 0, 2).reshape(plan.controls.shape[1], -1)
    for rows in row_slices(n, n_tokens):
        sel = valid[rows]
        if not sel.any():
            continue
        g = np.asarray(gradients[rows][sel], dtype=np.float64)
        a = np.asarray(x[rows][sel], dtype=np.float64)
        owner = np.nonzero(sel)[0] + rows.start
        out.moment += g.T @ g
        out.count += g.shape[0]
        out.activation += [_squares(a, plan.tangent).sum(), (a * a).sum()]
        t_in, p_in, norm = _squares(g, plan.tangent), _squares(g, plan.pca), (g * g).sum(axis=1)
        columns = [t_in, p_in, norm, np.zeros(len(g)), np.zeros(len(g))]
        if plan.solver is not None:
            local = projected_shares(g, active_atoms(nonnegative_codes(a, plan.solver), plan.active_fraction),
                                     plan.solver)
            pairing = (null_keys[rows][sel] % np.uint64(len(plan.fit_active))).astype(np.int64)
            null = projected_shares(g, plan.fit_active[pairing], plan.solver)
            radial = radial_shares(g, a)
            out.local += [np.nansum(local), np.nansum(null), np.nansum(radial),
                          np.isfinite(local).sum(), np.isfinite(radial).sum()]
            columns[LOCAL], columns[LOCAL_COUNT] = np.nan_to_num(local), np.isfinite(local).astype(np.float64)
        for j, column in enumerate(columns):
            per_sample[:, j] += np.bincount(owner, weights=column, minlength=n)
        if buckets is not None:
            b = buckets[rows][sel]
            keys = bucket_keys[rows][sel]
            for k in np.unique(b[b >= 0]):
                at = b == k
                controls = ((g[at] @ flat_controls) ** 2).reshape(at.sum(), plan.controls.shape[0], -1).sum(axis=-1)
                values = np.column_stack([t_in[at], p_in[at], norm[at], controls])
                out.bucket_keys[k], out.bucket_values[k] = _bottom(
                    np.concatenate([out.bucket_keys[k], keys[at]]), np.concatenate([out.bucket_values[k], values]),
                    plan.frequency_count)
    if plan.replicates:
        used = per_sample[:, NORM] > 0
        out.replicates = replicate_sums(per_sample[used], samples[used], plan.replicates, plan.seed)
    return out


def merge_sums(a: TangentSums, b: TangentSums) -> TangentSums:
    """Combine step (in place on ``a``)."""
    a.moment += b.moment
    a.count += b.count
    a.activation += b.activation
    a.local += b.local
    a.replicates += b.replicates
    for k in range(len(a.bucket_keys)):
        a.bucket_keys[k], a.bucket_values[k] = _bottom(np.concatenate([a.bucket_keys[k], b.bucket_keys[k]]),
                                                       np.concatenate([a.bucket_values[k], b.bucket_values[k]]),
                                                       a.keep)
    return a
