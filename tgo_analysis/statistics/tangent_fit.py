"""The tangent proxy of one (checkpoint, layer), fitted on the fit split of the samples.

The samples (sequences or images) are split once per analysis with a seeded permutation
(``fit_split``): the semi-NMF, the PCA baseline Q_P and the codes behind the local null are
fitted on the fit split, and every gradient statistic is computed on the held-out samples, so a
basis never scores the positions it was fitted to. Within the fit split, positions are chosen
as the pooled metrics choose them (padding never; special tokens and first positions by
``--exclude-special`` / ``--exclude-first``).

The subsample is read from the store without loading the layer: samples are taken in a seeded
random order until they hold enough valid positions (the attention mask is a small coordinate),
only those samples are read, and the positions are then drawn without replacement among their
valid ones. A second fit from another seed (another subsample and another start) gives
``tangent_subspace_stability``. Each bootstrap replicate (``refit_replicates``) resamples the
fit split's samples with the same Poisson weights the held-out half gets, and refits the semi-NMF
(each drawn point once with its draw count as weight, warm-started from the main fit's codes,
jittered by the replicate's own seed, at most ``--tangent-bootstrap-iterations``) and Q_P on the
resampled points, so the intervals carry the
fit's own variability. Control frames are drawn with a seed derived from (control seed,
checkpoint, layer), so every unit has its own reproducible draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.bootstrap import BOUNDS, DEFAULT_REPLICATES, poisson_weights
from tgo_analysis.kernels.seminmf import DEFAULT_ITERATIONS, DEFAULT_TOLERANCE
from tgo_analysis.kernels.sparse_seminmf import DEFAULT_SPARSITY
from tgo_analysis.kernels.tangent_energy import (
    isotropic_expectation,
    pca_bases,
    pca_basis,
    subspace_stability,
)
from tgo_analysis.kernels.tangent_local import (
    ACTIVITY_RULE,
    DEFAULT_ACTIVE_FRACTION,
    CodeSolver,
    active_atoms,
    code_solver,
    nonnegative_codes,
)
from tgo_analysis.kernels.tangent_sums import Frame
from tgo_analysis.statistics.base import Block
from tgo_analysis.statistics.tangent_kernels import (
    check_rank,
    control_bases,
    fit_seminmf,
    tangent_basis,
)
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.validity import PositionChoice, valid_positions

if TYPE_CHECKING:  # annotations only: `tgo --help` must not import xarray
    import xarray as xr

DEFAULT_RANK = 16
DEFAULT_FREQUENCY_COUNT = 256
DEFAULT_BOOTSTRAP_ITERATIONS = 8  # a warm-started refit moves little: 8, 15, 30 and 60 gave the same widths
REFIT_STREAM = 0x2EF1  # the generator of a replicate's start jitter: (stream, seed, replicate)
DEFAULT_BOOTSTRAP_POSITIONS = 1024  # held-out positions a replicate's refit is scored on (bounded cost)
WARM_JITTER = 0.01  # a replicate starts from the main codes times 1 + 0.01 * U(0, 1)
REFIT_PRECISION = np.float32  # a replicate refit's two n x D products per iteration (moves a replicate by ~1e-8)
SPLIT_STREAM = 0x5B17  # the split's generator: (stream, seed), apart from the subsample's


_FIT_PLAIN = ("semi-NMF (Ding, Li & Jordan 2010) A ≈ ZW, Z ≥ 0, of the un-centred activations of a seeded "
              "subsample of valid positions of the fit split; Q_T = orthonormal basis of the row space of W")
_FIT_SPARSE = ("sparse semi-NMF A ≈ ZW, Z ≥ 0, unit-norm rows of W, minimising ||A - ZW||^2 + 2 lambda sum(Z) with "
               "lambda = {sparsity} * RMS ||a_i|| by exact block coordinate descent (HALS), of the un-centred "
               "activations of a seeded subsample of valid positions of the fit split (the L1 price picks the "
               "unmixed atoms among semi-NMF's equally good fits); Q_T = orthonormal basis of the row space of W")


@dataclass(frozen=True)
class TangentOptions:
    """Everything that fixes the tangent numbers; recorded in the result attrs."""

    rank: int | None = None  # None: min(16, D // 4), so small models get a subspace with room for controls
    iterations: int = DEFAULT_ITERATIONS
    tolerance: float = DEFAULT_TOLERANCE
    sparsity: float = DEFAULT_SPARSITY  # L1 price on the codes / RMS‖a‖ (0: Ding's plain semi-NMF)
    subsample: int = 4096
    seed: int = 0  # split, subsample and semi-NMF start; the stability fit uses seed + 1
    control_draws: int = 32
    control_seed: int = 1
    fit_fraction: float = 0.5  # share of the samples the bases are fitted on
    active_fraction: float = DEFAULT_ACTIVE_FRACTION
    bootstrap: int = DEFAULT_REPLICATES
    bootstrap_iterations: int = DEFAULT_BOOTSTRAP_ITERATIONS
    bootstrap_positions: int = DEFAULT_BOOTSTRAP_POSITIONS
    frequency_count: int = DEFAULT_FREQUENCY_COUNT  # positions per frequency bucket (equal count)
    stability: bool = True
    exclude_special: bool = False
    exclude_first: bool = False
    device: str = "cpu"

    @property
    def positions(self) -> PositionChoice:
        return PositionChoice(exclude_special=self.exclude_special, exclude_first=self.exclude_first)

    def resolved(self, n_features: int) -> TangentOptions:
        """The options with the rank fixed for D features, checked (1 ≤ r, 2r ≤ D for the controls)."""
        rank = self.rank if self.rank is not None else max(1, min(DEFAULT_RANK, n_features // 4))
        check_rank(rank, n_features)
        if 2 * rank > n_features:
            raise TgoError(f"tangent rank {rank} leaves no room for {rank} control directions in the "
                           f"orthogonal complement of D = {n_features}; use a rank of at most {n_features // 2}")
        if not 0 < self.fit_fraction < 1:
            raise TgoError(f"--tangent-fit-fraction must be in (0, 1), got {self.fit_fraction}; the bases are "
                           "fitted on that share of the samples and the gradients scored on the rest")
        if self.sparsity < 0:
            raise TgoError(f"--tangent-sparsity must be at least 0, got {self.sparsity}; 0 fits the plain semi-NMF")
        if not 0 <= self.active_fraction < 1:
            raise TgoError(f"--tangent-active-fraction must be in [0, 1), got {self.active_fraction}")
        return replace(self, rank=rank)

    def attrs(self, n_features: int) -> dict[str, object]:
        options = self.resolved(n_features)
        out: dict[str, object] = {f"tangent_{k}": v for k, v in asdict(options).items() if k != "device"}
        out[N.TANGENT_ISOTROPIC] = isotropic_expectation(options.rank, n_features)
        out["tangent_fit"] = (_FIT_SPARSE.format(sparsity=options.sparsity) if options.sparsity > 0 else _FIT_PLAIN)
        out["tangent_pca"] = ("Q_P = top-r right singular vectors of the same un-centred fit-split subsample "
                              "the semi-NMF is fitted to (the 'high variance' subspace at matched rank and "
                              "matched centring); pca_energy_centred uses the top-r eigenvectors of its "
                              "centred covariance")
        out["tangent_controls"] = "Haar-uniform orthonormal frames in the orthogonal complement of Q_T"
        out["tangent_positions"] = options.positions.describe() + "; gradient statistics on held-out samples only"
        out["tangent_split"] = (f"fit split = the first round({options.fit_fraction} * n_samples) sample indices "
                                f"of numpy default_rng([{SPLIT_STREAM}, seed]).permutation(n_samples); every "
                                "other sample is held out")
        out["tangent_activity_rule"] = ACTIVITY_RULE.format(fraction=options.active_fraction)
        out["tangent_local_null"] = ("P_pi(i): the active atoms of a fit-split subsample position chosen by a "
                                     "seeded hash of held-out position i (no pairing of gradient and position); "
                                     "radial_null: the activation x_pi(i) of that same position; the excesses "
                                     "are local - null and radial - radial_null")
        out["tangent_bootstrap_replicates"] = options.bootstrap
        out["tangent_bootstrap_rule"] = (f"{options.bootstrap} replicates; replicate b gives every sample (fit "
                                         "and held-out halves alike) the Poisson(1) weight column b of "
                                         "default_rng([0xB007, seed, sample]); the semi-NMF is refitted on the "
                                         "resampled fit subsample (each drawn row once, weighted by its draw count: the "
                                         "repeated rows sharing one code), warm-started from "
                                         f"the main codes times 1 + {WARM_JITTER} * U(0, 1) of "
                                         f"default_rng([{REFIT_STREAM:#x}, seed, b]), at most "
                                         f"{options.bootstrap_iterations} iterations (each iteration's two n x D "
                                         f"products in {np.dtype(REFIT_PRECISION).name}), with Q_P and the local "
                                         f"null's pool (its first {options.bootstrap_positions} resampled rows); each statistic with an interval is recomputed as its "
                                         "value on the weighted held-out half under the main fit plus the "
                                         "paired change the replicate's refit makes on the same weights over "
                                         f"the {options.bootstrap_positions} held-out positions with the "
                                         "smallest seeded position keys (exact when the held-out half is "
                                         "no larger); interval = estimate +- t_(B-1)(0.95) SD of the B finite "
                                         f"replicates ({BOUNDS[0]:.0%}-{BOUNDS[1]:.0%} Student-t interval)")
        out["tangent_stability_rule"] = ("mean cos^2 of the principal angles between Q_T of this fit and of a "
                                         "fit with seed + 1 (another subsample of the fit split, another start)")
        out["tangent_frequency_rule"] = (f"per bucket, the {options.frequency_count} held-out positions with the "
                                         "smallest seeded position keys (equal count; a bucket with fewer is NaN); "
                                         "masked-LM masked positions saw the mask token, which the corpus counts "
                                         "do not hold, and enter no bucket")
        return out


def fit_split(n_samples: int, fraction: float, seed: int) -> np.ndarray:
    """(n_samples,) bool, True = fit split: round(fraction · n) samples of a seeded permutation."""
    if n_samples < 2:
        raise TgoError(f"tangent metrics fit their bases on some samples and score the gradients on the others; "
                       f"this store has {n_samples} sample(s): ingest at least 2")
    n_fit = min(n_samples - 1, max(1, round(fraction * n_samples)))
    out = np.zeros(n_samples, bool)
    out[np.random.default_rng([SPLIT_STREAM, int(seed)]).permutation(n_samples)[:n_fit]] = True
    return out


@dataclass(frozen=True)
class TangentBasis:
    """One unit's frames (``Frame``: Q_T (D, k), Q_P (D, k), the code solver of its dictionary, the
    active atoms and activations of its fit points: the local and radial nulls' pool), controls
    (draws, D, k), the centred Q_P, the fits' record and the bootstrap's refitted frames."""

    frame: Frame  # Q_T, Q_P (un-centred), the code solver and the null's pool of the main fit
    controls: np.ndarray
    pca_centred: np.ndarray
    fit_iterations: int
    fit_converged: bool
    positions: int
    stability: float = float("nan")
    stability_converged: bool = True
    replicates: tuple[Frame | None, ...] = ()  # one refitted frame per bootstrap replicate (None: too few drawn)
    codes: np.ndarray | None = None  # the main fit's codes of its points: the replicates' warm start (until finished)
    finished: bool = False  # the replicates and the stability twin are fitted (``finish_fit``)

    @property
    def tangent(self) -> np.ndarray:
        return self.frame.tangent

    @property
    def pca(self) -> np.ndarray:
        return self.frame.pca

    @property
    def solver(self) -> CodeSolver | None:
        return self.frame.solver

    @property
    def fit_active(self) -> np.ndarray | None:
        return self.frame.pool_active


def sample_positions(mask: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sample rows, (row-in-selection, token) pairs): a seeded subsample of ``size`` valid positions.

    Rows are taken in a seeded random order until they hold ``size`` valid positions; the
    returned rows are sorted (so the read is in store order) and the pairs index into them.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(mask.shape[0])
    enough = np.searchsorted(np.cumsum(mask[order].sum(axis=1)), size) + 1
    rows = np.sort(order[:enough])
    picked_rows, picked_tokens = np.nonzero(mask[rows])
    take = rng.permutation(picked_rows.size)[:size]
    return rows, np.stack([picked_rows[take], picked_tokens[take]], axis=1)


def fit_positions(ds: xr.Dataset, fit: np.ndarray, choice: PositionChoice) -> np.ndarray:
    """(sample, token) bool: the positions of the fit split that the fit may draw."""
    shape = (ds.sizes[S.SAMPLE], ds.sizes[S.TOKEN])
    mask = ds[S.ATTENTION_MASK].values if S.ATTENTION_MASK in ds else None
    special = ds[S.TOKEN_SPECIAL].values if S.TOKEN_SPECIAL in ds else None
    return valid_positions(shape, mask, special, choice) & fit[:, None]


@dataclass(frozen=True)
class FitDraws:
    """The positions a unit's fit reads: per draw (the fit, its seed + 1 stability twin) the sorted
    sample rows and the (row-in-draw, token) pairs of ``sample_positions``."""

    draws: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def rows(self) -> np.ndarray:
        """Every sample row a draw needs, sorted (what the engine reads for the fit)."""
        return np.unique(np.concatenate([rows for rows, _ in self.draws]))


def fit_draws(valid: np.ndarray, options: TangentOptions) -> FitDraws:
    """The seeded subsamples of ``valid`` positions the fits use (the same for every unit)."""
    seeds = (options.seed, options.seed + 1) if options.stability else (options.seed,)
    return FitDraws(tuple(sample_positions(valid, options.subsample, seed) for seed in seeds))


def draw_points(fit: Block, draws: FitDraws, index: int) -> np.ndarray:
    """(positions, D) float64 activations of draw ``index``, from the block of ``draws.rows`` the engine read."""
    rows, pairs = draws.draws[index]
    at = np.searchsorted(fit.samples, rows)
    return np.asarray(fit.x)[at[pairs[:, 0]], pairs[:, 1]].astype(np.float64)


def make_frame(points: np.ndarray, dictionary: np.ndarray, fraction: float, directions: bool = True,
               times: np.ndarray | None = None, pool_size: int | None = None, pca: np.ndarray | None = None) -> Frame:
    """The frames of one fit of ``points`` (n, D): Q_T, the un-centred Q_P (the points' own, or ``pca``:
    a bootstrap replicate's weighted one, ``pca_bases``), the solver, the null's pool (with
    ``directions``, the points' unit directions in float32 for the radial null: only the direction
    enters a radial share, and half the bytes of a copy stay with the unit). ``times`` (a bootstrap
    replicate's repeat counts of ``points``): the null's pool is the first ``pool_size`` resampled rows,
    each distinct point's code solved once)."""
    q_tangent = tangent_basis(dictionary)
    solver = code_solver(dictionary)
    if times is None:
        pool = active_atoms(nonnegative_codes(points, solver), solver.dictionary, fraction)
    else:  # the first ``pool_size`` resampled rows (the subsample's order is seeded-random) are the pool
        index = np.repeat(np.arange(len(points)), times)[:pool_size]
        unique, inverse = np.unique(index, return_inverse=True)
        pool = active_atoms(nonnegative_codes(points[unique], solver), solver.dictionary, fraction)[inverse]
    unit = None
    if directions:
        repeated = points if times is None else np.repeat(points, times, axis=0)
        norm = np.linalg.norm(repeated, axis=1, keepdims=True)
        unit = (repeated / np.where(norm > 0, norm, 1.0)).astype(np.float32)
    k = q_tangent.shape[1]  # a rank-deficient W: its k < r directions
    pca = pca_basis(points, k) if pca is None else pca[:, :k]
    return Frame(q_tangent, pca, solver, pool, unit)


def refit_replicates(points: np.ndarray, owners: np.ndarray, codes: np.ndarray, options: TangentOptions,
                     replicates: range | None = None) -> tuple[Frame | None, ...]:
    """One frame per bootstrap replicate (``replicates``, default all): the fit subsample ``points`` (n, D)
    resampled by the Poisson weights of their samples ``owners`` (n,), refitted from the main ``codes``
    (n, r), jittered.

    A point drawn t times enters its replicate's refit once, with weight t (the resampled fit with
    the copies sharing one code); points drawn 0 times cost nothing. Every replicate's Q_P comes from
    the samples' own moments at once (``pca_bases``)."""
    chosen = range(options.bootstrap) if replicates is None else replicates
    samples, owner_index = np.unique(owners, return_inverse=True)
    sample_times = poisson_weights(samples, options.bootstrap, options.seed)  # (samples, B): one draw per sample
    times = sample_times[owner_index].astype(np.int64)
    pcas = pca_bases(points, owner_index, sample_times[:, chosen.start:chosen.stop], options.rank)
    out: list[Frame | None] = []
    floor = max(float(codes.mean()), np.finfo(np.float64).tiny) * 1e-3  # a dead code can come back
    for b in chosen:
        drawn = np.flatnonzero(times[:, b])
        if times[drawn, b].sum() < 2 * options.rank or drawn.size < options.rank:  # too few drawn to fit
            out.append(None)
            continue
        jitter = 1 + WARM_JITTER * np.random.default_rng([REFIT_STREAM, options.seed, b]).random(drawn.size)
        fit = fit_seminmf(points[drawn], options.rank, iterations=options.bootstrap_iterations,
                          tolerance=options.tolerance, seed=options.seed, init=(codes[drawn] + floor) * jitter[:, None],
                          weights=times[drawn, b], sparsity=options.sparsity, precision=REFIT_PRECISION)
        out.append(make_frame(points, fit.dictionary, options.active_fraction, directions=False, times=times[:, b],
                              pool_size=options.bootstrap_positions, pca=pcas[b - chosen.start]))
    return tuple(out)


def fit_unit(fit: Block, draws: FitDraws, checkpoint: int, layer: int, options: TangentOptions) -> TangentBasis:
    """Fit semi-NMF on the fit split of one unit: the frames and controls the fold scores with.

    ``fit`` is the block of the unit's ``draws.rows`` that the engine read (``fit_rows``); the
    bootstrap's refits and the seed + 1 twin, which only the aggregate needs, are ``finish_fit``."""
    n_features = fit.x.shape[-1]
    options = options.resolved(n_features)
    points = draw_points(fit, draws, 0)
    check_rank(options.rank, n_features, points.shape[0])
    result = fit_seminmf(points, options.rank, iterations=options.iterations, tolerance=options.tolerance,
                         seed=options.seed, device=options.device, sparsity=options.sparsity)
    frame = make_frame(points, result.dictionary, options.active_fraction)
    controls = control_bases(frame.tangent, options.control_draws, (options.control_seed, checkpoint, layer))
    return TangentBasis(frame, controls, pca_basis(points, frame.tangent.shape[1], centred=True),
                        result.iterations, result.converged, int(points.shape[0]), codes=result.codes)


REPLICATES_PER_TASK = 5  # bootstrap replicates refitted per finish task (the engine runs the tasks at once)


def replicate_groups(options: TangentOptions) -> int:
    """How many groups of ``REPLICATES_PER_TASK`` bootstrap replicates there are (each one task)."""
    return -(-options.bootstrap // REPLICATES_PER_TASK)


def replicate_group(options: TangentOptions, group: int) -> range:
    """The replicates of group ``group``."""
    return range(group * REPLICATES_PER_TASK, min(options.bootstrap, (group + 1) * REPLICATES_PER_TASK))


def finish_tasks(options: TangentOptions) -> int:
    """How many tasks ``finish_fit`` is cut into: the replicate groups (``replicate_groups``), then the
    stability twin (at least one task, which may do nothing)."""
    return max(1, replicate_groups(options) + int(options.stability))


@dataclass(frozen=True)
class FinishPart:
    """What one finish task fitted: refitted frames of some replicates, or the twin's stability."""

    replicates: tuple[Frame | None, ...] = ()
    stability: tuple[float, bool] | None = None  # (tangent_subspace_stability, the twin converged)


def finish_fit(fit: Block, draws: FitDraws, basis: TangentBasis, options: TangentOptions, part: int) -> FinishPart:
    """Task ``part`` of ``finish_tasks``: the bootstrap's refitted frames of one group of replicates
    (``refit_replicates``), or the seed + 1 twin's ``tangent_subspace_stability``, from the same rows
    ``fit_unit`` read (the engine runs the tasks beside the fold)."""
    options = options.resolved(fit.x.shape[-1])
    if part < replicate_groups(options):
        rows, pairs = draws.draws[0]
        return FinishPart(refit_replicates(draw_points(fit, draws, 0), rows[pairs[:, 0]], basis.codes, options,
                                           replicate_group(options, part)))
    if not options.stability:
        return FinishPart()
    twin = fit_seminmf(draw_points(fit, draws, 1), options.rank, iterations=options.iterations,
                       tolerance=options.tolerance, seed=options.seed + 1, device=options.device,
                       sparsity=options.sparsity)
    return FinishPart(stability=(subspace_stability(basis.tangent, tangent_basis(twin.dictionary)), twin.converged))


def finished_basis(basis: TangentBasis, parts: Sequence[FinishPart]) -> TangentBasis:
    """``basis`` with its finish tasks' replicates (in order) and stability; the warm start is spent."""
    replicates = tuple(frame for part in parts for frame in part.replicates)
    out = replace(basis, replicates=replicates, codes=None, finished=True)
    for part in parts:
        if part.stability is not None:
            out = replace(out, stability=part.stability[0], stability_converged=part.stability[1])
    return out
