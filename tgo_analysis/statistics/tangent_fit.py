"""The tangent proxy of one (checkpoint, layer): semi-NMF on a seeded subsample of valid positions.

The subsample is read from the store without loading the layer: samples are taken in a seeded
random order until they hold enough valid positions (the attention mask is a small coordinate),
only those samples are read (so only the sample blocks that hold them), and the positions are
then drawn without replacement among their valid ones. Control frames are drawn with a seed
derived from (control seed, checkpoint, layer), so every unit has its own reproducible draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.kernels.pooling import PositionChoice, valid_positions
from tgo_analysis.kernels.seminmf import (
    DEFAULT_ITERATIONS,
    DEFAULT_TOLERANCE,
    check_rank,
    fit_seminmf,
)
from tgo_analysis.kernels.tangent_energy import control_bases, isotropic_expectation, tangent_basis
from tgo_store import schema as S
from tgo_store.errors import TgoError

DEFAULT_RANK = 16


@dataclass(frozen=True)
class TangentOptions:
    """Everything that fixes the tangent numbers; recorded in the result attrs."""

    rank: int | None = None  # None: min(16, D // 4), so small models get a subspace with room for controls
    iterations: int = DEFAULT_ITERATIONS
    tolerance: float = DEFAULT_TOLERANCE
    subsample: int = 4096
    seed: int = 0  # subsample and semi-NMF start
    control_draws: int = 32
    control_seed: int = 1
    device: str = "cpu"

    def resolved(self, n_features: int) -> TangentOptions:
        """The options with the rank fixed for D features, checked (1 ≤ r, 2r ≤ D for the controls)."""
        rank = self.rank if self.rank is not None else max(1, min(DEFAULT_RANK, n_features // 4))
        check_rank(rank, n_features)
        if 2 * rank > n_features:
            raise TgoError(f"tangent rank {rank} leaves no room for {rank} control directions in the "
                           f"orthogonal complement of D = {n_features}; use a rank of at most {n_features // 2}")
        return replace(self, rank=rank)

    def attrs(self, n_features: int) -> dict[str, object]:
        options = self.resolved(n_features)
        out: dict[str, object] = {f"tangent_{k}": v for k, v in asdict(options).items() if k != "device"}
        out[N.TANGENT_ISOTROPIC] = isotropic_expectation(options.rank, n_features)
        out["tangent_fit"] = ("semi-NMF (Ding, Li & Jordan 2010) A ≈ ZW, Z ≥ 0, of the un-centred "
                              "activations of a seeded subsample of valid positions; Q_T = orthonormal "
                              "basis of the row space of W")
        out["tangent_controls"] = "Haar-uniform orthonormal frames in the orthogonal complement of Q_T"
        out["tangent_positions"] = "every valid position (attention_mask true); padding never"
        return out


@dataclass(frozen=True)
class TangentBasis:
    """One unit's tangent frame Q_T (D, k), its control frames (draws, D, k) and the fit's record."""

    tangent: np.ndarray
    controls: np.ndarray
    fit_iterations: int
    fit_converged: bool
    positions: int


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


def fit_unit(ds: xr.Dataset, checkpoint: int, layer: int, options: TangentOptions) -> TangentBasis:
    """Read the subsample of one (checkpoint, layer), fit semi-NMF, build tangent and control frames."""
    act = ds[S.ACTIVATIONS]
    n_samples, n_tokens, n_features = (act.sizes[d] for d in (S.SAMPLE, S.TOKEN, S.FEATURE))
    options = options.resolved(n_features)
    mask = ds[S.ATTENTION_MASK].values if S.ATTENTION_MASK in ds else None
    valid = valid_positions((n_samples, n_tokens), mask, None, PositionChoice())
    rows, pairs = sample_positions(valid, options.subsample, options.seed)
    block = act.isel({S.CHECKPOINT: checkpoint, S.LAYER: layer, S.SAMPLE: rows}).values
    points = block[pairs[:, 0], pairs[:, 1]].astype(np.float64)
    check_rank(options.rank, n_features, points.shape[0])
    fit = fit_seminmf(points, options.rank, iterations=options.iterations, tolerance=options.tolerance,
                      seed=options.seed, device=options.device)
    q_tangent = tangent_basis(fit.dictionary)
    controls = control_bases(q_tangent, options.control_draws, (options.control_seed, checkpoint, layer))
    return TangentBasis(q_tangent, controls, fit.iterations, fit.converged, int(points.shape[0]))
