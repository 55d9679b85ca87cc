"""The streamed partial of the tangent statistic (pure numpy, float64): one block of held-out positions.

Everything the tangent rows of SPEC sections 5 and 8 need, from one read of activations and gradients:

- G = Σ g gᵀ (energies of any frame, optimal energy, alignments);
- Σ‖Q_Tᵀx‖², Σ‖x‖² (activation_energy);
- Σ of the local, null, radial and radial-null shares per position (``tangent_local``) and their counts;
- per bootstrap replicate b, Σ_s w_sb · [‖Q_Tᵀg‖², ‖Q_Pᵀg‖², ‖g‖², local, null, count] over the
  held-out samples s with Poisson weights w_sb (``bootstrap``), for the main fit's frames;
- a bounded seeded subsample of held-out positions (the ``boot_count`` smallest position keys) with
  their g, x and null keys: ``replicate_values`` scores each replicate's refitted frames on it, so
  each replicate's statistic is its resampled held-out half under the main frames plus the paired
  change its own refit makes on the same weighted positions (``replicate_values``);
- per frequency bucket, the held-out positions with the smallest seeded keys and their
  [‖Q_Tᵀg‖², ‖Q_Pᵀg‖², ‖g‖², ‖Q_Nᵀg‖² per control draw]: an equal-count subsample per bucket.

Combining is addition (and a bottom-k merge per bucket and for the bootstrap subsample), so
chunking changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tgo_analysis.kernels.bootstrap import poisson_weights, replicate_sums
from tgo_analysis.kernels.pooling import position_keys, row_slices
from tgo_analysis.kernels.tangent_local import (
    CodeSolver,
    active_atoms,
    nonnegative_codes,
    projected_shares,
    radial_shares,
)

# columns of the per-sample sums behind the bootstrap
T_IN, P_IN, NORM, LOCAL, NULL, LOCAL_COUNT = range(6)
N_SAMPLE_SUMS = 6
# the point estimates' local sums: Σ local, Σ null, Σ radial, n local, n radial, Σ radial null, n radial null
N_LOCAL = 7
# columns of a frequency subsample's values (then one per control draw)
F_T, F_P, F_NORM = range(3)
# key seeds of the local null pairing, the bucket subsample and the bootstrap's scoring subsample
NULL_STREAM, FREQUENCY_STREAM, BOOT_STREAM = 0x4E55, 0xF4E0, 0xB0B5


@dataclass(frozen=True)
class Frame:
    """One fit's frames: Q_T (D, k), Q_P (D, k), its code solver, and the null's pool (the fit
    positions' active sets (m, r), and for the main fit their unit directions (m, D) float32, paired
    with held-out positions by key)."""

    tangent: np.ndarray
    pca: np.ndarray
    solver: CodeSolver | None = None
    pool_active: np.ndarray | None = None
    pool_points: np.ndarray | None = None  # unit directions of the pool points (radial null; main fit only)


@dataclass(frozen=True)
class SumPlan:
    """What one unit's partial collects (a statistic asks only for what its metrics need)."""

    frame: Frame  # the main fit
    controls: np.ndarray  # (draws, D, k)
    local: bool = False  # the local test and the radial rows
    active_fraction: float = 0.25
    replicates: int = 0  # bootstrap replicates (their refitted frames enter in ``replicate_values``)
    boot_count: int = 0  # held-out positions the refitted frames are scored on
    n_buckets: int = 0
    frequency_count: int = 0
    seed: int = 0

    @property
    def tangent(self) -> np.ndarray:
        return self.frame.tangent


@dataclass
class TangentSums:
    moment: np.ndarray  # (D, D)
    count: int = 0
    activation: np.ndarray = field(default_factory=lambda: np.zeros(2))  # Σ‖Q_Tᵀx‖², Σ‖x‖²
    local: np.ndarray = field(default_factory=lambda: np.zeros(N_LOCAL))
    replicates: np.ndarray = field(default_factory=lambda: np.zeros((0, N_SAMPLE_SUMS)))
    boot_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # ascending
    boot_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [g, x] per position
    boot_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.uint64))  # [sample, null key]
    boot_count: int = 0
    bucket_keys: list = field(default_factory=list)  # per bucket (m,) uint64 ascending
    bucket_values: list = field(default_factory=list)  # per bucket (m, 3 + draws)
    keep: int = 0  # positions each bucket's subsample keeps
    scored: tuple[np.ndarray, np.ndarray] | None = None  # (own, main) ``scored_frames``, when the engine made them


def empty_sums(plan: SumPlan) -> TangentSums:
    d = plan.tangent.shape[0]
    width = 3 + plan.controls.shape[0]
    return TangentSums(np.zeros((d, d)), replicates=np.zeros((plan.replicates, N_SAMPLE_SUMS)),
                       boot_rows=np.zeros((0, 2 * d), np.float32), boot_count=plan.boot_count,
                       bucket_keys=[np.zeros(0, np.uint64) for _ in range(plan.n_buckets)],
                       bucket_values=[np.zeros((0, width)) for _ in range(plan.n_buckets)],
                       keep=plan.frequency_count)


def _squares(rows: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return ((rows @ basis) ** 2).sum(axis=-1)


def _bottom(keys: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")[:k]
    return keys[order], values[order]


def _boot_candidates(a: TangentSums, keys: np.ndarray) -> np.ndarray:
    """(m,) bool: the keys that can still enter the bootstrap's bottom-k (all until it is full)."""
    if len(a.boot_keys) < a.boot_count:
        return np.ones(len(keys), bool)
    return keys < a.boot_keys[-1]


def _bottom_boot(a: TangentSums, keys: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> None:
    if not len(keys):
        return
    keys = np.concatenate([a.boot_keys, keys])
    order = np.argsort(keys, kind="stable")[:a.boot_count]
    a.boot_keys = keys[order]
    a.boot_rows = np.concatenate([a.boot_rows, rows])[order]
    a.boot_ids = np.concatenate([a.boot_ids, ids])[order]


def local_shares(g: np.ndarray, a: np.ndarray, keys: np.ndarray, frame: Frame, fraction: float,
                 solve: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position: its local share, the null share (the active atoms of the pool position its key
    picks) and that pool position's index; NaN where g = 0 (``solve``: see ``projected_shares``)."""
    solver = frame.solver
    active = active_atoms(nonnegative_codes(a, solver), solver.dictionary, fraction)
    local = projected_shares(g, active, solver, solve)
    pairing = (keys % np.uint64(len(frame.pool_active))).astype(np.int64)
    return local, projected_shares(g, frame.pool_active[pairing], solver, solve), pairing


def frame_columns(g: np.ndarray, a: np.ndarray, keys: np.ndarray | None, frame: Frame, local: bool,
                  fraction: float, solve: bool = False) -> np.ndarray:
    """(n, N_SAMPLE_SUMS) per-position [‖Q_Tᵀg‖², ‖Q_Pᵀg‖², ‖g‖², local, null, counted] for one frame."""
    out = np.zeros((len(g), N_SAMPLE_SUMS))
    out[:, T_IN], out[:, P_IN], out[:, NORM] = _squares(g, frame.tangent), _squares(g, frame.pca), (g * g).sum(axis=1)
    if local:
        shares, null, _ = local_shares(g, a, keys, frame, fraction, solve)
        out[:, LOCAL], out[:, NULL], out[:, LOCAL_COUNT] = np.nan_to_num(shares), np.nan_to_num(null), np.isfinite(shares)
    return out


def block_sums(x: np.ndarray, gradients: np.ndarray, valid: np.ndarray, samples: np.ndarray,
               tokens: tuple[int, int], plan: SumPlan, buckets: np.ndarray | None = None) -> TangentSums:
    """Chunk step for one block x, gradients (n, T, D) over its ``valid`` held-out positions (n, T)."""
    out = empty_sums(plan)
    n, n_tokens, _ = x.shape
    main = plan.frame
    per_sample = np.zeros((n, N_SAMPLE_SUMS))
    null_keys = position_keys(samples, tokens, plan.seed + NULL_STREAM) if plan.local else None
    bucket_keys = position_keys(samples, tokens, plan.seed + FREQUENCY_STREAM) if buckets is not None else None
    boot_keys = position_keys(samples, tokens, plan.seed + BOOT_STREAM) if plan.boot_count else None
    flat_controls = plan.controls.transpose(1, 0, 2).reshape(plan.controls.shape[1], -1)
    for rows in row_slices(n, n_tokens):
        sel = valid[rows]
        if not sel.any():
            continue
        g = np.asarray(gradients[rows][sel], dtype=np.float64)
        a = np.asarray(x[rows][sel], dtype=np.float64)
        owner = np.nonzero(sel)[0] + rows.start
        keys = null_keys[rows][sel] if null_keys is not None else np.zeros(len(g), np.uint64)
        out.moment += g.T @ g
        out.count += g.shape[0]
        out.activation += [_squares(a, main.tangent).sum(), (a * a).sum()]
        columns = frame_columns(g, a, keys, main, plan.local, plan.active_fraction)
        if plan.local:
            pairing = (keys % np.uint64(len(main.pool_active))).astype(np.int64)
            local, null = columns[:, LOCAL], columns[:, NULL]
            counted = columns[:, LOCAL_COUNT] > 0
            radial, radial_null = radial_shares(g, a), radial_shares(g, main.pool_points[pairing])
            out.local += [local[counted].sum(), null[counted].sum(), np.nansum(radial), counted.sum(),
                          np.isfinite(radial).sum(), np.nansum(radial_null), np.isfinite(radial_null).sum()]
        for j in range(N_SAMPLE_SUMS):
            per_sample[:, j] += np.bincount(owner, weights=columns[:, j], minlength=n)
        if boot_keys is not None:
            candidate_keys = boot_keys[rows][sel]
            take = _boot_candidates(out, candidate_keys)  # copy only the rows that can enter
            ids = np.column_stack([np.asarray(samples, np.uint64)[owner[take]], keys[take]])
            pair = np.empty((int(take.sum()), 2 * g.shape[1]), np.float32)
            pair[:, :g.shape[1]], pair[:, g.shape[1]:] = g[take], a[take]
            _bottom_boot(out, candidate_keys[take], pair, ids)
        if buckets is not None:
            bk = buckets[rows][sel]
            bkeys = bucket_keys[rows][sel]
            for k in np.unique(bk[bk >= 0]):
                at = bk == k
                controls = ((g[at] @ flat_controls) ** 2).reshape(at.sum(), plan.controls.shape[0], -1).sum(axis=-1)
                values = np.column_stack([columns[at, T_IN], columns[at, P_IN], columns[at, NORM], controls])
                out.bucket_keys[k], out.bucket_values[k] = _bottom(
                    np.concatenate([out.bucket_keys[k], bkeys[at]]), np.concatenate([out.bucket_values[k], values]),
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
    if a.boot_count:
        take = _boot_candidates(a, b.boot_keys)
        _bottom_boot(a, b.boot_keys[take], b.boot_rows[take], b.boot_ids[take])
    for k in range(len(a.bucket_keys)):
        a.bucket_keys[k], a.bucket_values[k] = _bottom(np.concatenate([a.bucket_keys[k], b.bucket_keys[k]]),
                                                       np.concatenate([a.bucket_values[k], b.bucket_values[k]]),
                                                       a.keep)
    return a


# the statistics each replicate gives (columns of ``replicate_values``)
S_ENERGY, S_VS_PCA, S_LOCAL, S_NULL, S_EXCESS = range(5)


def sum_ratios(sums: np.ndarray) -> np.ndarray:
    """(..., 5) [E_T, E_T / E_P, local, null, local − null] from sums (..., N_SAMPLE_SUMS)."""
    s = np.asarray(sums, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([s[..., T_IN] / s[..., NORM], s[..., T_IN] / s[..., P_IN], s[..., LOCAL] / s[..., LOCAL_COUNT],
                         s[..., NULL] / s[..., LOCAL_COUNT], (s[..., LOCAL] - s[..., NULL]) / s[..., LOCAL_COUNT]],
                        axis=-1)


def _scoring_rows(partial: TangentSums, plan: SumPlan, replicates: int) -> tuple[np.ndarray, ...]:
    """The scoring subsample as float64 g, a, its null keys and each position's Poisson weights (m, replicates)."""
    d = plan.tangent.shape[0]
    rows = partial.boot_rows.astype(np.float64)
    samples, keys = partial.boot_ids[:, 0].astype(np.int64), partial.boot_ids[:, 1]
    return rows[:, :d], rows[:, d:], keys, poisson_weights(samples, replicates, plan.seed)


def scored_frames(partial: TangentSums, plan: SumPlan, frames: tuple[Frame | None, ...],
                  replicates: range | None = None) -> np.ndarray:
    """(len(replicates), 5) ``sum_ratios`` of each replicate's weighted scoring subsample under its own
    refitted frame (``frames[b]``; NaN without one, 0 where the replicate draws no position of it). With
    ``frames`` None: under the main frame, for every replicate (the other side of each paired change).
    Both sides with the batched solve (equal to the estimate's pseudo-inverse up to rounding), so the
    difference carries no change of method."""
    n = plan.replicates if frames is None else len(frames)
    chosen = range(n) if replicates is None else replicates
    out = np.zeros((len(chosen), 5))
    if not len(partial.boot_keys):
        return out
    g, a, keys, weights = _scoring_rows(partial, plan, n)
    main = frame_columns(g, a, keys, plan.frame, plan.local, plan.active_fraction, solve=True) if frames is None \
        else None
    for i, b in enumerate(chosen):
        frame = plan.frame if frames is None else frames[b]
        if frame is None:
            out[i] = np.nan
            continue
        w = weights[:, b]
        drawn = w > 0
        if not drawn.any():
            continue
        columns = main[drawn] if main is not None else frame_columns(g[drawn], a[drawn], keys[drawn], frame,
                                                                     plan.local, plan.active_fraction, solve=True)
        out[i] = sum_ratios(w[drawn] @ columns)
    return out


def replicate_values(partial: TangentSums, plan: SumPlan, frames: tuple[Frame | None, ...],
                     scored: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(replicates, 5) each replicate's statistics (``sum_ratios``): the Poisson-weighted held-out half
    under the main frames, plus the paired change its own refitted frame makes under the same weights
    on the scoring subsample (own − main there, ``scored_frames``; ``scored``: (own, main) already
    computed). With the whole held-out half in the subsample this is exactly the replicate's weighted
    statistic under its own frame; NaN for a replicate with no refit."""
    out = sum_ratios(partial.replicates)
    if not len(partial.boot_keys) or not len(frames):
        return out
    own, main = scored if scored is not None else (scored_frames(partial, plan, frames),
                                                   scored_frames(partial, plan, None))
    return out + own - main
