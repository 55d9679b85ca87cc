"""tangent_* (SPEC section 5): tangent proxies against the streamed gradient second moment.

One reduction serves every tangent number: chunk = G = Σ g gᵀ (float64) over the valid
positions of a block of ``gradients``, one G per frequency bucket when the store has token ids
and ``vocab_count`` (their sum is the layer's G); combine = sum; aggregate = energies,
enrichment and alignments of the unit's tangent and control frames (``tgo_analysis.kernels.tangent_energy``).
The frames come from ``prepare_unit``: semi-NMF on a seeded subsample of that (checkpoint,
layer)'s activations (``tgo_analysis.statistics.tangent_fit``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.kernels.buckets import DEFAULT_BUCKETS, frequency_edges, position_buckets
from tgo_analysis.kernels.pooling import PositionChoice, valid_positions
from tgo_analysis.kernels.tangent_energy import second_moment, tangent_statistics
from tgo_analysis.statistics.base import Block, Context, Option, Result, StatisticBase, Variable
from tgo_analysis.statistics.tangent_fit import TangentBasis, TangentOptions, fit_unit
from tgo_store import schema as S
from tgo_store.errors import TgoError

OPTIONS = {  # TangentOptions field -> the analysis option that sets it
    "rank": Option("tangent_rank", None, "tangent: semi-NMF rank r (default min(16, D/4))", int, optional=True),
    "subsample": Option("tangent_subsample", 4096, "tangent: valid positions in the semi-NMF fit"),
    "iterations": Option("tangent_iterations", 500, "tangent: semi-NMF iteration cap"),
    "tolerance": Option("tangent_tolerance", 1e-6, "tangent: stop at this relative objective decrease", float),
    "control_draws": Option("tangent_draws", 32, "tangent: seeded control subspaces per (checkpoint, layer)"),
    "seed": Option("tangent_seed", 0, "tangent: seed of the subsample and the semi-NMF start"),
}


@dataclass(frozen=True)
class TangentSetup:
    """Store-level parameters (``prepare``); ``basis`` is filled per unit (``prepare_unit``)."""

    options: TangentOptions
    edges: np.ndarray | None = None  # frequency bucket edges; None for stores without token ids
    vocab_count: np.ndarray | None = None
    basis: TangentBasis | None = None

    @property
    def n_buckets(self) -> int:
        return 0 if self.edges is None else len(self.edges) - 1


@dataclass
class GradientMoment:
    moment: np.ndarray  # (buckets + 1, D, D): per frequency bucket, last = positions in no bucket
    count: int


def _options(value: Any) -> TangentOptions:
    if isinstance(value, TangentOptions):
        return value
    known = {f.name for f in dataclasses.fields(TangentOptions)}
    return TangentOptions(**{k: v for k, v in dict(value or {}).items() if k in known})


@dataclass(frozen=True)
class TangentEnrichment(StatisticBase):
    name: str = N.TANGENT
    metrics: tuple[str, ...] = (N.TANGENT, N.TANGENT_ENERGY, N.CONTROL_ENERGY, N.TANGENT_ENRICHMENT,
                                N.TANGENT_ALIGNMENT, N.CONTROL_ALIGNMENT, N.TANGENT_ENRICHMENT_BY_FREQUENCY)
    token_split: bool = False
    needs_gradients: bool = True
    unit_setup: bool = True
    options = tuple(OPTIONS.values())

    def supports(self, ds: xr.Dataset) -> bool:
        return S.GRADIENTS in ds.data_vars

    def prepare(self, ds: xr.Dataset, ctx: Context) -> TangentSetup:
        """Refuse a store without gradients; fix the options and the frequency buckets."""
        if not self.supports(ds):
            raise TgoError(f"tangent metrics need the '{S.GRADIENTS}' variable and this store has none; "
                           "re-ingest with `tgo ingest --gradients` or drop the tangent metrics")
        raw = ctx.params.get(self.name)
        if raw is None:
            raw = {field: ctx.option(option) for field, option in OPTIONS.items()}
        options = _options(raw.options if isinstance(raw, TangentSetup) else raw)
        device = getattr(ctx, "device", None)
        if device:
            options = dataclasses.replace(options, device=str(device))
        options = options.resolved(ctx.n_features)  # a bad rank is refused before any work
        if S.TOKEN_ID in ds and S.VOCAB_COUNT in ds:  # the frequency statistic's buckets, shared dim
            counts = np.asarray(ds[S.VOCAB_COUNT].values, dtype=np.int64)
            frequency = ctx.params.get(N.FREQUENCY)
            frequency = frequency if isinstance(frequency, dict) else {}
            edges = frequency.get("edges")
            if edges is None:
                edges = frequency_edges(counts, int(frequency.get("n_buckets") or DEFAULT_BUCKETS))
            return TangentSetup(options, np.asarray(edges), counts)
        return TangentSetup(options)

    def prepare_unit(self, ds: xr.Dataset, checkpoint: int, layer: int, ctx: Context) -> TangentSetup:
        setup = self._setup(ctx)
        return dataclasses.replace(setup, basis=fit_unit(ds, checkpoint, layer, setup.options))

    def _setup(self, ctx: Context) -> TangentSetup:
        value = ctx.params.get(self.name)
        return value if isinstance(value, TangentSetup) else TangentSetup(_options(value))

    def variables(self, ctx: Context) -> tuple[Variable, ...]:
        setup = self._setup(ctx)
        def want(name: str) -> bool:
            return ctx.wants(N.TANGENT) or ctx.wants(name)

        scalars = (N.TANGENT_ENERGY, N.TANGENT_ENRICHMENT, N.TANGENT_ALIGNMENT, N.CONTROL_ALIGNMENT)
        out = [Variable(name, (), ()) for name in scalars if want(name)]
        if want(N.CONTROL_ENERGY):
            out.append(Variable(N.CONTROL_ENERGY, (N.CONTROL_DRAW,), (setup.options.control_draws,)))
        if setup.n_buckets and want(N.TANGENT_ENRICHMENT_BY_FREQUENCY):
            out.append(Variable(N.TANGENT_ENRICHMENT_BY_FREQUENCY, (N.FREQUENCY_BUCKET,), (setup.n_buckets,)))
        return tuple(out)

    def coords(self, ctx: Context) -> dict[str, tuple[str, np.ndarray]]:
        setup = self._setup(ctx)
        out = {N.CONTROL_DRAW: (N.CONTROL_DRAW, np.arange(setup.options.control_draws))}
        if setup.n_buckets:
            out[N.FREQUENCY_LOW] = (N.FREQUENCY_BUCKET, setup.edges[:-1])
            out[N.FREQUENCY_HIGH] = (N.FREQUENCY_BUCKET, setup.edges[1:])
        return out

    def attrs(self, ctx: Context) -> dict[str, object]:
        return self._setup(ctx).options.attrs(ctx.n_features)

    def chunk(self, block: Block, ctx: Context) -> GradientMoment:
        if block.gradients is None:
            raise TgoError(f"tangent metrics need the '{S.GRADIENTS}' variable and this store has none; "
                           "re-ingest with `tgo ingest --gradients`")
        setup = self._setup(ctx)
        valid = valid_positions(block.gradients.shape[:2], block.attention_mask, block.token_special,
                                PositionChoice())
        buckets = None
        if setup.n_buckets and block.token_id is not None:
            buckets = position_buckets(block.token_id, setup.vocab_count, setup.edges, valid)
        moment, count = second_moment(block.gradients, valid, buckets, setup.n_buckets)
        return GradientMoment(moment.reshape(-1, *moment.shape[-2:]), count)

    def combine(self, a: GradientMoment, b: GradientMoment) -> GradientMoment:
        a.moment += b.moment
        a.count += b.count
        return a

    def aggregate(self, partial: GradientMoment, ctx: Context) -> Result:
        setup = self._setup(ctx)
        if setup.basis is None:
            raise TgoError("tangent metrics need the unit's semi-NMF basis; the engine must call prepare_unit")
        q_t, q_n = setup.basis.tangent, setup.basis.controls
        stats = tangent_statistics(partial.moment.sum(axis=0), q_t, q_n)
        arrays = {N.TANGENT_ENERGY: stats.tangent_energy, N.CONTROL_ENERGY: stats.control_energy,
                  N.TANGENT_ENRICHMENT: stats.tangent_enrichment, N.TANGENT_ALIGNMENT: stats.tangent_alignment,
                  N.CONTROL_ALIGNMENT: stats.control_alignment}
        if setup.n_buckets:
            by_bucket = tangent_statistics(partial.moment[: setup.n_buckets], q_t, q_n)
            arrays[N.TANGENT_ENRICHMENT_BY_FREQUENCY] = by_bucket.tangent_enrichment
        wanted = {v.name for v in self.variables(ctx)}
        return Result({k: np.asarray(v) for k, v in arrays.items() if k in wanted})

    def partial_bytes(self, ctx: Context, n_tokens: int) -> int:
        return 8 * ctx.n_features**2 * (self._setup(ctx).n_buckets + 2)
