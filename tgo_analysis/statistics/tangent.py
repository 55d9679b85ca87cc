"""tangent_* (SPEC section 5): tangent proxies against the streamed gradients, with the baselines
that could refute them.

``prepare`` fixes the options, the seeded fit/held-out split of the samples and the frequency
buckets; ``prepare_unit`` fits the unit's bases on the fit split (``tangent_fit.fit_unit``), and
``finish_unit`` the bootstrap's refits and the stability twin (``tangent_fit.finish_fit``), which
the engine runs beside the fold because only ``aggregate`` reads them; the fold
streams the held-out positions of every block (``tgo_analysis.kernels.tangent_sums``): the
gradient second moment G, the activation energy, the per-position local / null / radial shares,
the bootstrap replicates (each with its own refitted basis, ``tangent_fit.refit_replicates``) and
an equal-count subsample per frequency bucket. ``aggregate`` turns them into every tangent row
(SPEC 5, revised by SPEC 8): E_T against the normal controls (the paper's), against the PCA
subspace at matched rank and centring and against the optimum; the concept-local and radial
tests against their nulls with the paired excesses; intervals, the stability of the fit, and a
reason code for an unconverged fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tgo_analysis import names as N
from tgo_analysis.kernels.bootstrap import BOUND_NAMES, DEFAULT_REPLICATES, t_interval
from tgo_analysis.kernels.buckets import DEFAULT_BUCKETS, frequency_edges, position_buckets
from tgo_analysis.kernels.sparse_seminmf import DEFAULT_SPARSITY
from tgo_analysis.kernels.tangent_energy import (
    energy,
    optimal_energy,
    tangent_statistics,
    weighted_alignment,
)
from tgo_analysis.kernels.tangent_sums import (
    F_NORM,
    F_P,
    F_T,
    S_ENERGY,
    S_EXCESS,
    S_LOCAL,
    S_NULL,
    S_VS_PCA,
    SumPlan,
    TangentSums,
    block_sums,
    merge_sums,
    replicate_values,
    scored_frames,
)
from tgo_analysis.statistics.base import Block, Context, Option, Result, StatisticBase, Variable
from tgo_analysis.statistics.positions import POSITION_OPTIONS, position_choice
from tgo_analysis.statistics.tangent_fit import (
    DEFAULT_BOOTSTRAP_ITERATIONS,
    FinishPart,
    FitDraws,
    TangentBasis,
    TangentOptions,
    finish_fit,
    finish_tasks,
    finished_basis,
    fit_draws,
    fit_positions,
    fit_split,
    fit_unit,
    replicate_group,
    replicate_groups,
)
from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.validity import valid_positions

if TYPE_CHECKING:  # annotations only: `tgo --help` must not import xarray
    import xarray as xr

OPTIONS = {  # TangentOptions field -> the analysis option that sets it
    "rank": Option("tangent_rank", None, "tangent: semi-NMF rank r (default min(16, D/4))", int, optional=True),
    "subsample": Option("tangent_subsample", 4096, "tangent: valid positions in the semi-NMF fit"),
    "iterations": Option("tangent_iterations", 500, "tangent: semi-NMF iteration cap"),
    "tolerance": Option("tangent_tolerance", 1e-6, "tangent: stop when one iteration lowers the objective by "
                        "less than this fraction of the activations' centred energy", float),
    "sparsity": Option("tangent_sparsity", DEFAULT_SPARSITY, "tangent: L1 price on the semi-NMF codes, as a "
                       "fraction of the activations' RMS norm; it picks unmixed atoms for the local test (0: "
                       "Ding's plain semi-NMF)", float),
    "control_draws": Option("tangent_draws", 32, "tangent: seeded control subspaces per (checkpoint, layer)"),
    "seed": Option("tangent_seed", 0, "tangent: seed of the split, the subsample, the semi-NMF start, the "
                   "bootstrap and the local null"),
    "fit_fraction": Option("tangent_fit_fraction", 0.5, "tangent: share of the samples the bases are fitted "
                           "on; gradients are scored on the rest", float),
    "active_fraction": Option("tangent_active_fraction", 0.25, "tangent: an atom is active at a position when "
                              "it is in the NNLS support and its contribution z_j |w_j| exceeds this fraction "
                              "of the position's reconstruction norm", float),
    "bootstrap": Option("tangent_bootstrap", DEFAULT_REPLICATES, "tangent: bootstrap replicates over samples, each "
                        "refitting the basis on its resampled fit half; intervals use Student's t with B - 1 degrees "
                        "of freedom (0: no intervals)"),
    "bootstrap_iterations": Option("tangent_bootstrap_iterations", DEFAULT_BOOTSTRAP_ITERATIONS, "tangent: "
                                   "iteration cap of each replicate's warm-started semi-NMF refit"),
    "bootstrap_positions": Option("tangent_bootstrap_positions", 1024, "tangent: held-out positions (a seeded "
                                  "subsample) each replicate's refitted basis is scored on"),
    "frequency_count": Option("tangent_frequency_count", 256, "tangent: held-out positions per frequency bucket "
                              "(equal count; a smaller bucket is NaN)"),
    "stability": Option("tangent_stability", True, "tangent: fit a second time from seed + 1 for "
                        "tangent_subspace_stability", bool),
}

REASON_OK, REASON_UNCONVERGED, REASON_TWIN_UNCONVERGED, REASON_NO_GRADIENT = 0, 1, 2, 3
REASON_CODES = {
    REASON_OK: "ok",
    REASON_UNCONVERGED: "the semi-NMF fit did not converge within --tangent-iterations: every tangent number "
                        "of this unit rests on an unconverged basis; raise the cap or the tolerance",
    REASON_TWIN_UNCONVERGED: "the seed + 1 fit behind tangent_subspace_stability did not converge",
    REASON_NO_GRADIENT: "no held-out gradient energy (all held-out gradients are zero)",
}

SCALARS = (N.TANGENT_ENERGY, N.TANGENT_ENRICHMENT, N.TANGENT_ALIGNMENT, N.CONTROL_ALIGNMENT, N.PCA_ENERGY,
           N.PCA_ENERGY_CENTRED, N.TANGENT_ENRICHMENT_VS_PCA, N.OPTIMAL_ENERGY, N.ACTIVATION_ENERGY,
           N.TANGENT_ALIGNMENT_WEIGHTED, N.LOCAL_TANGENT_ENERGY, N.LOCAL_TANGENT_NULL, N.LOCAL_TANGENT_EXCESS,
           N.RADIAL_ENERGY, N.RADIAL_NULL, N.RADIAL_EXCESS, N.TANGENT_SUBSPACE_STABILITY)
INTERVALS = (N.TANGENT_ENERGY_CI, N.TANGENT_ENRICHMENT_VS_PCA_CI, N.LOCAL_TANGENT_ENERGY_CI, N.LOCAL_TANGENT_NULL_CI,
             N.LOCAL_TANGENT_EXCESS_CI)
LOCAL_NAMES = (N.LOCAL_TANGENT_ENERGY, N.LOCAL_TANGENT_NULL, N.LOCAL_TANGENT_EXCESS, N.RADIAL_ENERGY, N.RADIAL_NULL,
               N.RADIAL_EXCESS, N.LOCAL_TANGENT_ENERGY_CI, N.LOCAL_TANGENT_NULL_CI, N.LOCAL_TANGENT_EXCESS_CI)
BY_FREQUENCY = (N.TANGENT_ENRICHMENT_BY_FREQUENCY, N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY)


@dataclass(frozen=True)
class TangentSetup:
    """Store-level parameters (``prepare``); ``basis`` is filled per unit (``prepare_unit``)."""

    options: TangentOptions
    fit: np.ndarray | None = None  # (n_samples,) bool: the fit split
    edges: np.ndarray | None = None  # frequency bucket edges; None for stores without token ids
    vocab_count: np.ndarray | None = None
    masked_lm: tuple[float, int] | None = None  # (mask rate, seed) of a masked-LM store
    sample_ids: np.ndarray | None = None  # the `sample` coordinate: the ids the masked-LM draw was seeded with
    draws: FitDraws | None = None  # the fit's subsamples of the fit split (``fit_rows``)
    basis: TangentBasis | None = None

    @property
    def n_buckets(self) -> int:
        return 0 if self.edges is None else len(self.edges) - 1


def _options(value: Any) -> TangentOptions:
    if isinstance(value, TangentOptions):
        return value
    known = {f.name for f in dataclasses.fields(TangentOptions)}
    return TangentOptions(**{k: v for k, v in dict(value or {}).items() if k in known})


def masked_lm_positions(samples: np.ndarray, n_tokens: int, valid: np.ndarray, special: np.ndarray | None,
                        rate: float, seed: int) -> np.ndarray:
    """(n, T) bool: where a masked-LM ingest replaced the input by the mask token.

    The same draw as ``tgo_store.capture.losses.masked_inputs`` (per (seed, sample id), valid and not
    special), recomputed from the store's ``loss`` attr, so analysis needs no extra variable.
    """
    chosen = np.stack([np.random.default_rng([int(seed), int(s)]).random(n_tokens) < rate
                       for s in np.asarray(samples)]).reshape(len(samples), n_tokens)
    out = chosen & np.asarray(valid, bool)
    return out if special is None else out & ~np.asarray(special, bool)


@dataclass(frozen=True)
class TangentEnrichment(StatisticBase):
    name: str = N.TANGENT
    metrics: tuple[str, ...] = (N.TANGENT, *SCALARS, N.CONTROL_ENERGY, *INTERVALS, *BY_FREQUENCY,
                                N.TANGENT_METRIC_REASON)
    token_split: bool = False
    needs_gradients: bool = True
    unit_setup: bool = True
    options = (*OPTIONS.values(), *POSITION_OPTIONS)

    def supports(self, ds: xr.Dataset) -> bool:
        return S.GRADIENTS in ds.data_vars

    def prepare(self, ds: xr.Dataset, ctx: Context) -> TangentSetup:
        """Refuse a store without gradients; fix the options, the split and the frequency buckets."""
        if not self.supports(ds):
            raise TgoError(f"tangent metrics need the '{S.GRADIENTS}' variable and this store has none; "
                           "re-ingest with `tgo ingest --gradients` or drop the tangent metrics")
        raw = ctx.params.get(self.name)
        if raw is None:
            raw = {field: ctx.option(option) for field, option in OPTIONS.items()}
        options = _options(raw.options if isinstance(raw, TangentSetup) else raw)
        choice = position_choice(ctx)
        options = dataclasses.replace(options, exclude_special=choice.exclude_special or options.exclude_special,
                                      exclude_first=choice.exclude_first or options.exclude_first)
        device = getattr(ctx, "device", None)
        if device:
            options = dataclasses.replace(options, device=str(device))
        options = options.resolved(ctx.n_features)  # a bad rank is refused before any work
        fit = fit_split(ds.sizes[S.SAMPLE], options.fit_fraction, options.seed)
        setup = TangentSetup(options, fit, draws=fit_draws(fit_positions(ds, fit, options.positions), options))
        loss = ds.attrs.get(S.ATTR_LOSS)
        if isinstance(loss, dict) and loss.get("kind") == "masked_lm":
            ids = ds[S.SAMPLE].values if S.SAMPLE in ds.coords else np.arange(ds.sizes[S.SAMPLE])
            setup = dataclasses.replace(setup, masked_lm=(float(loss["mask_rate"]), int(loss.get("seed") or 0)),
                                        sample_ids=np.asarray(ids, dtype=np.int64))
        if S.TOKEN_ID in ds and S.VOCAB_COUNT in ds:  # the frequency statistic's buckets, shared dim
            counts = np.asarray(ds[S.VOCAB_COUNT].values, dtype=np.int64)
            frequency = ctx.params.get(N.FREQUENCY)
            frequency = frequency if isinstance(frequency, dict) else {}
            edges = frequency.get("edges")
            if edges is None:
                edges = frequency_edges(counts, int(frequency.get("n_buckets") or DEFAULT_BUCKETS))
            setup = dataclasses.replace(setup, edges=np.asarray(edges), vocab_count=counts)
        return setup

    def fit_rows(self, ctx: Context) -> np.ndarray | None:
        draws = self._setup(ctx).draws
        return None if draws is None else draws.rows

    def prepare_unit(self, fit: Block | None, ctx: Context) -> TangentSetup:
        setup = self._setup(ctx)
        if fit is None or setup.draws is None:
            raise TgoError("tangent metrics fit their bases on the rows prepare() drew; run prepare first")
        return dataclasses.replace(setup, basis=fit_unit(fit, setup.draws, *ctx.unit, setup.options))

    def finish_parts(self, ctx: Context) -> int:
        return finish_tasks(self._setup(ctx).options)

    def finish_unit(self, fit: Block | None, ctx: Context, part: int = 0) -> FinishPart:
        """The bootstrap's refitted bases (a group of replicates per part) and the stability twin (the
        last part): only ``aggregate`` reads them."""
        setup = self._setup(ctx)
        if fit is None or setup.draws is None or setup.basis is None:
            raise TgoError("tangent metrics finish the fit prepare_unit made; the engine must call prepare_unit")
        return finish_fit(fit, setup.draws, setup.basis, setup.options, part)

    def finish_join(self, parts: Sequence[FinishPart], ctx: Context) -> TangentSetup:
        setup = self._setup(ctx)
        if setup.basis is None:
            raise TgoError("tangent metrics finish the fit prepare_unit made; the engine must call prepare_unit")
        return dataclasses.replace(setup, basis=finished_basis(setup.basis, parts))

    def _setup(self, ctx: Context) -> TangentSetup:
        value = ctx.params.get(self.name)
        return value if isinstance(value, TangentSetup) else TangentSetup(_options(value))

    def _want(self, ctx: Context, name: str) -> bool:
        return ctx.wants(N.TANGENT) or ctx.wants(name)

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        setup = self._setup(ctx)
        out = [Variable(name, (), ()) for name in SCALARS if self._want(ctx, name)]
        if self._want(ctx, N.CONTROL_ENERGY):
            out.append(Variable(N.CONTROL_ENERGY, (N.CONTROL_DRAW,), (setup.options.control_draws,)))
        if setup.options.bootstrap:
            out += [Variable(name, (N.BOUND,), (2,)) for name in INTERVALS if self._want(ctx, name)]
        if setup.n_buckets:
            out += [Variable(name, (N.FREQUENCY_BUCKET,), (setup.n_buckets,)) for name in BY_FREQUENCY
                    if self._want(ctx, name)]
        if out:  # every tangent result carries the fit's reason code
            out.append(Variable(N.TANGENT_METRIC_REASON, (), (), np.int8, -1))
        return tuple(out)

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        setup = self._setup(ctx)
        out = {N.CONTROL_DRAW: (N.CONTROL_DRAW, np.arange(setup.options.control_draws)),
               N.BOUND: (N.BOUND, np.array(BOUND_NAMES, dtype=np.dtypes.StringDType()))}
        if setup.n_buckets:
            out[N.FREQUENCY_LOW] = (N.FREQUENCY_BUCKET, setup.edges[:-1])
            out[N.FREQUENCY_HIGH] = (N.FREQUENCY_BUCKET, setup.edges[1:])
        return out

    def attrs(self, ctx: Context) -> dict[str, object]:
        setup = self._setup(ctx)
        out = setup.options.attrs(ctx.n_features)
        out["tangent_reason_codes"] = {str(k): v for k, v in REASON_CODES.items()}
        if setup.fit is not None:
            out["tangent_fit_samples"] = int(setup.fit.sum())
            out["tangent_held_out_samples"] = int((~setup.fit).sum())
        return out

    def _plan(self, ctx: Context, setup: TangentSetup) -> SumPlan:
        basis = setup.basis
        if basis is None:
            raise TgoError("tangent metrics need the unit's semi-NMF basis; the engine must call prepare_unit")
        local = any(self._want(ctx, name) for name in LOCAL_NAMES)
        replicates = setup.options.bootstrap if any(self._want(ctx, n) for n in INTERVALS) else 0
        buckets = setup.n_buckets if any(self._want(ctx, n) for n in BY_FREQUENCY) else 0
        return SumPlan(basis.frame, basis.controls, local, setup.options.active_fraction, replicates,
                       setup.options.bootstrap_positions if replicates else 0, buckets,
                       setup.options.frequency_count, setup.options.seed)

    def chunk(self, block: Block, ctx: Context) -> TangentSums:
        if block.gradients is None:
            raise TgoError(f"tangent metrics need the '{S.GRADIENTS}' variable and this store has none; "
                           "re-ingest with `tgo ingest --gradients`")
        setup = self._setup(ctx)
        plan = self._plan(ctx, setup)
        shape = block.gradients.shape[:2]
        valid = valid_positions(shape, block.attention_mask, block.token_special, setup.options.positions)
        if setup.fit is not None:
            valid &= ~setup.fit[block.samples][:, None]
        buckets = None
        if plan.n_buckets and block.token_id is not None:
            seen = valid
            if setup.masked_lm is not None:  # the model saw the mask token there, which no corpus count holds
                mask = block.attention_mask if block.attention_mask is not None else np.ones(shape, bool)
                ids = block.samples if setup.sample_ids is None else setup.sample_ids[block.samples]
                seen = valid & ~masked_lm_positions(ids, shape[1], mask, block.token_special, *setup.masked_lm)
            buckets = position_buckets(block.token_id, setup.vocab_count, setup.edges, seen)
        return block_sums(block.x, block.gradients, valid, block.samples, block.tokens, plan, buckets)

    def combine(self, a: TangentSums, b: TangentSums) -> TangentSums:
        return merge_sums(a, b)

    @staticmethod
    def _finished(setup: TangentSetup) -> TangentBasis:
        if setup.basis is None or not setup.basis.finished:
            raise TgoError("tangent metrics need the unit's semi-NMF basis and its refits; the engine must call "
                           "prepare_unit and finish_unit")
        return setup.basis

    def aggregate(self, partial: TangentSums, ctx: Context) -> Result:
        setup = self._setup(ctx)
        basis = self._finished(setup)
        g = partial.moment
        k = basis.tangent.shape[1]
        stats = tangent_statistics(g, basis.tangent, basis.controls)
        e_p = energy(g, basis.pca)
        with np.errstate(invalid="ignore", divide="ignore"):
            local = partial.local
            local_energy, local_null = local[0] / local[3], local[1] / local[3]
            radial, radial_null = local[2] / local[4], local[5] / local[6]
            arrays: dict[str, Any] = {
                N.TANGENT_ENERGY: stats.tangent_energy, N.CONTROL_ENERGY: stats.control_energy,
                N.TANGENT_ENRICHMENT: stats.tangent_enrichment, N.TANGENT_ALIGNMENT: stats.tangent_alignment,
                N.CONTROL_ALIGNMENT: stats.control_alignment, N.PCA_ENERGY: e_p,
                N.PCA_ENERGY_CENTRED: energy(g, basis.pca_centred),
                N.TANGENT_ENRICHMENT_VS_PCA: stats.tangent_energy / e_p,
                N.OPTIMAL_ENERGY: optimal_energy(g, k),
                N.ACTIVATION_ENERGY: partial.activation[0] / partial.activation[1],
                N.TANGENT_ALIGNMENT_WEIGHTED: weighted_alignment(basis.tangent, g, k),
                N.LOCAL_TANGENT_ENERGY: local_energy, N.LOCAL_TANGENT_NULL: local_null,
                N.LOCAL_TANGENT_EXCESS: local_energy - local_null, N.RADIAL_ENERGY: radial,
                N.RADIAL_NULL: radial_null, N.RADIAL_EXCESS: radial - radial_null,
                N.TANGENT_SUBSPACE_STABILITY: basis.stability,
            }
        if partial.replicates.shape[0]:
            values = replicate_values(partial, self._plan(ctx, setup), basis.replicates, partial.scored)
            for name, column in ((N.TANGENT_ENERGY, S_ENERGY), (N.TANGENT_ENRICHMENT_VS_PCA, S_VS_PCA),
                                 (N.LOCAL_TANGENT_ENERGY, S_LOCAL), (N.LOCAL_TANGENT_NULL, S_NULL),
                                 (N.LOCAL_TANGENT_EXCESS, S_EXCESS)):
                arrays[f"{name}_ci"] = t_interval(float(arrays[name]), values[:, column])
        if partial.bucket_values:
            arrays.update(self._by_frequency(partial, setup.options.frequency_count))
        arrays[N.TANGENT_METRIC_REASON] = self._reason(basis, g)
        wanted = {v.name for v in self.variables(ctx)}
        return Result({key: np.asarray(v) for key, v in arrays.items() if key in wanted})

    def aggregate_parts(self, ctx: Context) -> int:
        """The bootstrap's scoring at once: the main frame's side, then each group of refitted replicates."""
        setup = self._setup(ctx)
        if not setup.options.bootstrap or not any(self._want(ctx, n) for n in INTERVALS):
            return 0
        return 1 + replicate_groups(setup.options)

    def aggregate_part(self, partial: TangentSums, ctx: Context, part: int) -> np.ndarray:
        setup = self._setup(ctx)
        basis, plan = self._finished(setup), self._plan(ctx, setup)
        if part == 0:
            return scored_frames(partial, plan, None)
        return scored_frames(partial, plan, basis.replicates, replicate_group(setup.options, part - 1))

    def with_parts(self, partial: TangentSums, parts: Sequence[np.ndarray], ctx: Context) -> TangentSums:
        return dataclasses.replace(partial, scored=(np.concatenate(parts[1:]), parts[0]))

    @staticmethod
    def _by_frequency(partial: TangentSums, count: int) -> dict[str, np.ndarray]:
        """Enrichment and its PCA ratio per bucket, over exactly ``count`` positions (NaN when fewer)."""
        full = [v.shape[0] >= count > 0 for v in partial.bucket_values]
        sums = np.stack([v.sum(axis=0) if ok else np.full(v.shape[1], np.nan)
                         for v, ok in zip(partial.bucket_values, full, strict=True)])
        with np.errstate(invalid="ignore", divide="ignore"):
            e_t = sums[:, F_T] / sums[:, F_NORM]
            e_n = sums[:, 3:] / sums[:, F_NORM, None]
            return {N.TANGENT_ENRICHMENT_BY_FREQUENCY: e_t / e_n.mean(axis=1),
                    N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY: sums[:, F_T] / sums[:, F_P]}

    @staticmethod
    def _reason(basis: TangentBasis, moment: np.ndarray) -> np.int8:
        if not basis.fit_converged:
            return np.int8(REASON_UNCONVERGED)
        if not np.trace(moment) > 0:
            return np.int8(REASON_NO_GRADIENT)
        if not basis.stability_converged:
            return np.int8(REASON_TWIN_UNCONVERGED)
        return np.int8(REASON_OK)

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        o = self._setup(ctx).options
        frequency = self._setup(ctx).n_buckets * o.frequency_count * (3 + o.control_draws) * 16
        boot = o.bootstrap_positions * (8 * ctx.n_features + 32) if o.bootstrap else 0  # float32 g, x; keys
        return 8 * ctx.n_features**2 + 8 * 6 * o.bootstrap + frequency + boot

    def temp_bytes(self, ctx: Context, rows: int) -> int:
        return 5 * rows * ctx.n_tokens * ctx.n_features * 8  # cast x and g, their projections, the codes
