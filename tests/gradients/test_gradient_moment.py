"""The tangent statistic: prepare/prepare_unit/chunk/combine/aggregate on in-memory stores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.graph import Plan, reduce_unit, unit_context
from tgo_analysis.kernels.buckets import frequency_edges, position_buckets
from tgo_analysis.kernels.pooling import position_keys
from tgo_analysis.kernels.tangent_sums import FREQUENCY_STREAM
from tgo_analysis.statistics.base import Context
from tgo_analysis.statistics.tangent import TangentEnrichment
from tgo_analysis.statistics.tangent_fit import sample_positions
from tgo_store.errors import TgoError
from tgo_store.store import schema as S

N_SAMPLES, T, D, R = 40, 12, 32, 3


def store(grad_inside: bool, text: bool = False, seed: int = 0) -> xr.Dataset:
    """One checkpoint, one layer: activations = non-negative mixtures of R directions."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((R, D))
    acts = rng.exponential(size=(N_SAMPLES, T, R)) @ w + 1e-3 * rng.standard_normal((N_SAMPLES, T, D))
    basis = np.linalg.qr(w.T)[0]
    if grad_inside:
        grads = rng.standard_normal((N_SAMPLES, T, R)) @ basis.T + 1e-3 * rng.standard_normal((N_SAMPLES, T, D))
    else:
        grads = rng.standard_normal((N_SAMPLES, T, D))
    dims = S.DIMS
    ds = xr.Dataset({S.ACTIVATIONS: (dims, acts[None, None].astype(np.float32)),
                     S.GRADIENTS: (dims, grads[None, None].astype(np.float32))})
    if text:
        ids = rng.zipf(1.5, size=(N_SAMPLES, T)) % 50
        mask = np.ones((N_SAMPLES, T), bool)
        mask[::3, -4:] = False  # right padding
        ids = np.where(mask, ids, -1)
        counts = np.bincount(ids[mask], minlength=50)
        ds = ds.assign_coords({S.TOKEN_ID: ((S.SAMPLE, S.TOKEN), ids.astype(np.int32)),
                               S.ATTENTION_MASK: ((S.SAMPLE, S.TOKEN), mask)})
        ds[S.VOCAB_COUNT] = ((S.VOCAB,), counts)
    return ds


def run(ds: xr.Dataset, params: dict | None = None, metrics=(N.TANGENT,), rows: int = 16):
    """prepare, prepare_unit, then the production fold (``reduce_unit``) over sample blocks."""
    import dask.array as da

    stat = TangentEnrichment()
    ctx = Context(N_SAMPLES, T, D, metrics=metrics, params={stat.name: params or {}})
    ctx = Context(N_SAMPLES, T, D, metrics=metrics, params={stat.name: stat.prepare(ds, ctx)})

    def lazy(name: str) -> LazySlab:
        values = ds[name].values
        values = values[0, 0] if values.ndim == 5 else values
        return LazySlab(da.from_array(values, chunks=(rows, *values.shape[1:])))

    extras = {k: lazy(k) for k in (S.GRADIENTS, S.ATTENTION_MASK, S.TOKEN_ID) if k in ds}
    source = UnitSource(lazy(S.ACTIVATIONS), extras)
    unit = unit_context(ctx, [stat], 0, 0, source)  # the engine reads the fit rows prepare_unit asks for
    return stat, unit.ctx, reduce_unit(source, [stat], unit, Plan(((0, T),), threads=2))


OPTIONS = {"rank": R, "subsample": 300, "iterations": 800, "tolerance": 1e-10, "control_draws": 50}


def test_planted_subspace_store_is_enriched_and_aligned():
    stat, unit, out = run(store(grad_inside=True), OPTIONS)
    assert out[N.TANGENT_ENRICHMENT] > 0.9 * D / R
    assert out[N.TANGENT_ALIGNMENT] > 0.99
    assert out[N.CONTROL_ENERGY].shape == (50,)
    assert {v.name for v in stat.variables(unit)} == set(out)
    attrs = stat.attrs(unit)
    assert attrs["tangent_rank"] == R and attrs["tangent_isotropic_expectation"] == R / D
    assert attrs["tangent_subsample"] == 300 and attrs["tangent_control_draws"] == 50


def test_isotropic_store_gives_about_one():
    _, _, out = run(store(grad_inside=False), OPTIONS)
    spread = out[N.CONTROL_ENERGY].std() / out[N.CONTROL_ENERGY].mean()
    assert abs(out[N.TANGENT_ENRICHMENT] - 1) < 4 * spread


def test_energies_match_float64_brute_force_on_text_store():
    ds = store(grad_inside=False, text=True)
    count = 6
    _, unit, out = run(ds, {**OPTIONS, "frequency_count": count})
    setup = unit.params[N.TANGENT]
    basis = setup.basis
    held = ~setup.fit[:, None]  # gradient statistics on the held-out samples only
    mask = ds[S.ATTENTION_MASK].values & held
    g = ds[S.GRADIENTS].values[0, 0].astype(np.float64)

    def share(sel, q):
        rows = g[sel]
        return np.sum((rows @ q) ** 2) / np.sum(rows * rows)

    assert out[N.TANGENT_ENERGY] == pytest.approx(share(mask, basis.tangent), rel=1e-10)
    controls = [share(mask, q) for q in basis.controls]
    np.testing.assert_allclose(out[N.CONTROL_ENERGY], controls, rtol=1e-10)
    counts = ds[S.VOCAB_COUNT].values
    edges = frequency_edges(counts)
    buckets = position_buckets(ds[S.TOKEN_ID].values, counts, edges, mask)
    keys = position_keys(np.arange(N_SAMPLES), (0, T), OPTIONS.get("seed", 0) + FREQUENCY_STREAM)
    assert out[N.TANGENT_ENRICHMENT_BY_FREQUENCY].shape == (len(edges) - 1,)
    checked = 0
    for b in range(len(edges) - 1):
        inside = np.flatnonzero(buckets.ravel() == b)
        if inside.size < count:  # an equal-count subsample needs `count` positions
            assert np.isnan(out[N.TANGENT_ENRICHMENT_BY_FREQUENCY][b])
            continue
        sel = np.zeros(buckets.size, bool)
        sel[inside[np.argsort(keys.ravel()[inside])[:count]]] = True
        sel = sel.reshape(buckets.shape)
        want = share(sel, basis.tangent) / np.mean([share(sel, q) for q in basis.controls])
        np.testing.assert_allclose(out[N.TANGENT_ENRICHMENT_BY_FREQUENCY][b], want, rtol=1e-10)
        np.testing.assert_allclose(out[N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY][b],
                                   share(sel, basis.tangent) / share(sel, basis.pca), rtol=1e-10)
        checked += 1
    assert checked >= 2


def test_subsample_reads_only_valid_positions_and_is_seeded():
    mask = np.random.default_rng(0).random((50, 10)) > 0.5
    rows, pairs = sample_positions(mask, 40, seed=3)
    assert len(pairs) == 40 and len(set(map(tuple, pairs))) == 40
    assert mask[rows][pairs[:, 0], pairs[:, 1]].all()
    assert len(rows) < 50  # only the samples that hold the subsample are read
    again = sample_positions(mask, 40, seed=3)
    np.testing.assert_array_equal(again[1], pairs)


def test_store_without_gradients_is_refused_in_one_line():
    ds = store(grad_inside=False).drop_vars(S.GRADIENTS)
    stat = TangentEnrichment()
    assert not stat.supports(ds)
    with pytest.raises(TgoError, match="--gradients") as info:
        stat.prepare(ds, Context(N_SAMPLES, T, D, metrics=(N.TANGENT,)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("rank", [D, D // 2 + 1])
def test_rank_without_room_for_controls_is_refused_before_any_work(rank):
    stat = TangentEnrichment()
    ctx = Context(N_SAMPLES, T, D, metrics=(N.TANGENT,), params={stat.name: {**OPTIONS, "rank": rank}})
    with pytest.raises(TgoError, match="rank") as info:
        stat.prepare(store(grad_inside=False), ctx)
    assert "\n" not in str(info.value)


def test_default_rank_fits_small_models():
    stat = TangentEnrichment()
    setup = stat.prepare(store(grad_inside=False), Context(N_SAMPLES, T, D, metrics=(N.TANGENT,)))
    assert setup.options.rank == D // 4 and stat.attrs(Context(N_SAMPLES, T, D, params={stat.name: setup}))[
        "tangent_isotropic_expectation"] == (D // 4) / D


def test_analyze_refuses_tangent_without_gradients_and_all_skips_it(tmp_path):
    from tgo_analysis.analyze import analyze
    from tgo_analysis.results.selection import parse_metrics

    ds = store(grad_inside=False).drop_vars(S.GRADIENTS)
    with pytest.raises(TgoError, match="gradients") as info:
        analyze(ds, "tangent", out=str(tmp_path / "r.zarr"), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "r.zarr").exists()
    assert N.TANGENT not in parse_metrics("all", ds)
    assert N.TANGENT in parse_metrics("all", store(grad_inside=False))


def test_analyze_writes_every_tangent_variable_with_its_attrs():
    from tgo_analysis.analyze import analyze

    res = analyze(store(grad_inside=True).chunk({S.SAMPLE: 16}), "tangent", progress=False,
                  params={N.TANGENT: OPTIONS})
    assert res[N.CONTROL_ENERGY].dims == (N.CHECKPOINT, N.LAYER, N.CONTROL_DRAW)
    assert float(res[N.TANGENT_ENRICHMENT].values.item()) > 0.9 * D / R
    assert res.attrs["tangent_isotropic_expectation"] == R / D and res.attrs["tangent_rank"] == R
