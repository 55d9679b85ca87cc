"""update_norm, update_tangent_energy, update_pca_energy (SPEC section 6): representation updates.

Checkpoint k and k + 1 of one layer are read in lockstep (the same inputs), and for every valid
position u = h_{k+1} − h_k. One pass folds Σ‖u‖, the un-centred second moment U = Σ u uᵀ and the
pooled co-moment of h_k; the aggregate projects U on Q_T, the tangent proxy of checkpoint k
(semi-NMF, ``statistics.tangent_fit.fit_unit`` with the tangent statistic's own options and seed,
so it is the same frame the tangent statistic uses), and on Q_P, the top-r PCA of h_k, with the
same r. The share tr(QᵀUQ)/tr(U) of a random r-dim subspace is r/D: the isotropic yardstick; Q_P
is the baseline that says whether the tangent share is more than "updates go where variance is".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels import cka as K
from tgo_analysis.kernels.moments import Moments, covariance, fold_moments, symmetrize
from tgo_analysis.kernels.tangent_energy import isotropic_expectation
from tgo_analysis.statistics.base import (
    LAYER_CHECKPOINTS,
    Block,
    Context,
    Result,
    StatisticBase,
    Variable,
)
from tgo_analysis.statistics.tangent import OPTIONS as TANGENT_OPTIONS
from tgo_analysis.statistics.tangent_fit import (
    FitDraws,
    TangentBasis,
    TangentOptions,
    fit_draws,
    fit_positions,
    fit_split,
    fit_unit,
)
from tgo_store.store import schema as S

if TYPE_CHECKING:  # annotations only: `tgo --help` must not import xarray
    import xarray as xr

FIT_OPTIONS = ("rank", "sparsity", "subsample", "iterations", "tolerance", "seed")  # what fixes Q_T (controls are not used)


@dataclass(frozen=True)
class UpdateSetup:
    options: TangentOptions
    basis: TangentBasis | None = None  # Q_T of the unit's checkpoint k (``prepare_unit``)
    draws: FitDraws | None = None  # the fit's subsample of the fit split (``fit_rows``)


@dataclass
class UpdatePartial:
    count: int  # valid positions
    norm_sum: float  # Σ‖u‖
    second: np.ndarray  # U = Σ u uᵀ (D, D), float64
    moments: Moments | None  # pooled moments of h_k (for Q_P)


@dataclass(frozen=True)
class RepresentationUpdates(StatisticBase):
    name: str = N.UPDATES
    metrics: tuple[str, ...] = (N.UPDATES, N.UPDATE_NORM, N.UPDATE_TANGENT_ENERGY, N.UPDATE_PCA_ENERGY)
    token_split: bool = False
    unit_kind: str = LAYER_CHECKPOINTS
    unit_setup: bool = True
    options = tuple(TANGENT_OPTIONS[k] for k in FIT_OPTIONS)

    def supports(self, ds: xr.Dataset) -> bool:
        return ds.sizes.get(S.CHECKPOINT, 0) >= 2

    def partners(self, checkpoint: int, ctx: Context) -> tuple[int, ...]:
        return (checkpoint + 1,) if checkpoint + 1 < ctx.n_checkpoints else ()

    def _wants_tangent(self, ctx: Context) -> bool:
        return ctx.wants(N.UPDATES) or ctx.wants(N.UPDATE_TANGENT_ENERGY)

    def prepare(self, ds: xr.Dataset, ctx: Context) -> UpdateSetup:
        options = TangentOptions(**{k: ctx.option(TANGENT_OPTIONS[k]) for k in FIT_OPTIONS},
                                 control_draws=1, bootstrap=0, stability=False,  # only Q_T is used
                                 device=str(ctx.device))
        options = options.resolved(ctx.n_features)  # a bad rank is refused before any work
        fit = fit_split(ds.sizes[S.SAMPLE], options.fit_fraction, options.seed)
        return UpdateSetup(options, draws=fit_draws(fit_positions(ds, fit, options.positions), options))

    def _setup(self, ctx: Context) -> UpdateSetup:
        value = ctx.params.get(self.name)
        return value if isinstance(value, UpdateSetup) else UpdateSetup(TangentOptions().resolved(ctx.n_features))

    def fit_rows(self, ctx: Context) -> np.ndarray | None:
        setup = self._setup(ctx)
        if setup.draws is None or not self._wants_tangent(ctx) or not self.partners(ctx.unit[0], ctx):
            return None
        return setup.draws.rows

    def prepare_unit(self, fit: Block | None, ctx: Context) -> UpdateSetup:
        setup = self._setup(ctx)
        if fit is None or setup.draws is None:
            return setup
        return dataclasses.replace(setup, basis=fit_unit(fit, setup.draws, *ctx.unit, setup.options))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        names = (N.UPDATE_NORM, N.UPDATE_TANGENT_ENERGY, N.UPDATE_PCA_ENERGY)
        return tuple(Variable(n, (), ()) for n in names if ctx.wants(N.UPDATES) or ctx.wants(n))

    def attrs(self, ctx: Context) -> dict[str, Any]:
        options = self._setup(ctx).options
        return {"update_rank": options.rank,
                "update_isotropic_expectation": isotropic_expectation(options.rank, ctx.n_features),
                "update_definition": ("u = h_{k+1} - h_k at every valid position, same inputs; update_norm = mean "
                                      "‖u‖; update_*_energy = Σ‖Qᵀu‖² / Σ‖u‖² with Q_T the semi-NMF tangent proxy "
                                      "of checkpoint k (tangent_rank, tangent_sparsity, tangent_seed, tangent_subsample) and Q_P the "
                                      "top-r principal directions of checkpoint k's pooled positions (same r); a "
                                      "random r-dim subspace gives update_isotropic_expectation = r/D; NaN at the "
                                      "last checkpoint")}

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        return 4 * rows * ctx.n_tokens * ctx.n_features * 8

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 3 * ctx.n_features**2 * 8

    def groups(self, ctx: Context, room: int) -> tuple[Any, ...]:
        from tgo_store.errors import TgoError

        if self.partial_bytes(ctx, ctx.n_tokens) > room:
            raise TgoError(f"memory budget leaves {room / 1e6:.0f} MB for the update moments, below "
                           f"{self.partial_bytes(ctx, ctx.n_tokens) / 1e6:.0f} MB; raise --memory-budget")
        return (None,)

    def fold(self, acc: UpdatePartial | None, block: Block, ctx: Context) -> UpdatePartial:
        checkpoint, layer = ctx.slabs[0]
        valid = K.valid_mask(block.x.shape[:2], block.attention_mask)
        h = np.asarray(block.x[valid], dtype=np.float64)
        u = np.asarray(block.slab(ctx.slab_index(checkpoint + 1, layer))[valid], dtype=np.float64) - h
        if acc is None:
            acc = UpdatePartial(0, 0.0, np.zeros((ctx.n_features, ctx.n_features)), None)
        if h.shape[0]:
            acc.count += h.shape[0]
            acc.norm_sum += float(np.linalg.norm(u, axis=1).sum())
            acc.second += u.T @ u
            acc.moments = fold_moments(acc.moments, h[:, None, :])
        return acc

    def chunk(self, block: Block, ctx: Context) -> UpdatePartial:
        return self.fold(None, block, ctx)

    def combine(self, a: UpdatePartial, b: UpdatePartial) -> UpdatePartial:
        raise NotImplementedError("updates folds its blocks in order (fold)")

    def aggregate(self, partial: UpdatePartial, ctx: Context) -> Result:
        setup = self._setup(ctx)
        out: dict[str, np.ndarray] = {N.UPDATE_NORM: np.asarray(partial.norm_sum / partial.count
                                                                if partial.count else np.nan)}
        rank = setup.basis.tangent.shape[1] if setup.basis is not None else int(setup.options.rank)
        if partial.moments is not None and partial.moments.count > 1:
            q_p = K.pca_basis(covariance(symmetrize(partial.moments))[0], rank)
            out[N.UPDATE_PCA_ENERGY] = np.asarray(K.subspace_energy(partial.second, q_p))
        if setup.basis is not None:
            out[N.UPDATE_TANGENT_ENERGY] = np.asarray(K.subspace_energy(partial.second, setup.basis.tangent))
        wanted = {v.name for v in self.variables(ctx)}
        return Result({k: v for k, v in out.items() if k in wanted})
