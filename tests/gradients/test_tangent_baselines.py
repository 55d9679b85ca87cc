"""The tangent rows that can refute a tangent finding (SPEC 5): planted nulls and positives, and
every new name against an independent float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import xarray as xr
from scipy.optimize import nnls
from scipy.stats import t as student_t

from tests.gradients.tangent_stores import sparse_activations
from tgo_analysis import names as N
from tgo_analysis.engine.blocks import LazySlab, UnitSource
from tgo_analysis.engine.graph import Plan, reduce_unit, unit_context
from tgo_analysis.kernels.pooling import position_keys
from tgo_analysis.kernels.tangent_local import active_atoms, nonnegative_codes
from tgo_analysis.kernels.tangent_sums import BOOT_STREAM, NULL_STREAM
from tgo_analysis.statistics.base import Context
from tgo_analysis.statistics.tangent import (
    REASON_UNCONVERGED,
    TangentEnrichment,
    masked_lm_positions,
)
from tgo_analysis.statistics.tangent_fit import fit_positions, sample_positions
from tgo_store.store import schema as S

N_SAMPLES, T, D, R = 48, 10, 24, 4
OPTIONS = {"rank": R, "subsample": 240, "iterations": 400, "tolerance": 1e-6, "control_draws": 16,
           "bootstrap": 12, "frequency_count": 4}


def dataset(acts: np.ndarray, grads: np.ndarray, mask: np.ndarray | None = None) -> xr.Dataset:
    ds = xr.Dataset({S.ACTIVATIONS: (S.DIMS, acts[None, None].astype(np.float32)),
                     S.GRADIENTS: (S.DIMS, grads[None, None].astype(np.float32))})
    if mask is not None:
        ds = ds.assign_coords({S.ATTENTION_MASK: ((S.SAMPLE, S.TOKEN), mask)})
    return ds


def run(ds: xr.Dataset, options: dict | None = None, rows: int = 16, positions: dict | None = None):
    """prepare, prepare_unit and the production fold; returns (the unit's setup as aggregate saw it, after
    finish_unit's refits, and the result arrays)."""
    stat, source, unit = prepared_unit(ds, options, rows, positions)
    out = reduce_unit(source, [stat], unit, Plan(((0, ds.sizes[S.TOKEN]),), threads=2))
    fit, parts = unit.fits[stat.name], range(stat.finish_parts(unit.ctx))  # deterministic: the engine's own refits
    return stat.finish_join([stat.finish_unit(fit, unit.ctx, p) for p in parts], unit.ctx), out


def prepared_unit(ds: xr.Dataset, options: dict | None = None, rows: int = 16, positions: dict | None = None):
    """(the statistic, the unit's source, its ``unit_context``) after ``prepare``."""
    import dask.array as da

    stat = TangentEnrichment()
    n, t, d = (ds.sizes[k] for k in (S.SAMPLE, S.TOKEN, S.FEATURE))
    params = {**OPTIONS, **(options or {})}
    ctx = Context(n, t, d, metrics=(N.TANGENT,), params={stat.name: params}, options=positions or {})
    ctx = Context(n, t, d, metrics=(N.TANGENT,), params={stat.name: stat.prepare(ds, ctx)}, options=positions or {})

    def lazy(name: str) -> LazySlab:
        values = ds[name].values
        values = values[0, 0] if values.ndim == 5 else values
        return LazySlab(da.from_array(values, chunks=(rows, *values.shape[1:])))

    extras = {k: lazy(k) for k in (S.GRADIENTS, S.ATTENTION_MASK, S.TOKEN_ID, S.TOKEN_SPECIAL) if k in ds}
    source = UnitSource(lazy(S.ACTIVATIONS), extras)
    return stat, source, unit_context(ctx, [stat], 0, 0, source)  # the engine reads the fit rows prepare_unit asks for


def sparse_layer(rng, n=N_SAMPLES, active=2, atoms=R, d=D, noise=1e-3):
    """Activations x = Σ_{j∈S_i} z_j w_j with |S_i| = ``active`` of ``atoms`` planted atoms (this file's shape)."""
    return sparse_activations(rng, n, T, d, atoms, active, noise)


# ---- the independent float64 reference ---------------------------------------------------------

def reference(ds: xr.Dataset, setup, options: dict) -> dict:
    """Every tangent number from its definition, position by position, in float64."""
    opts = {**OPTIONS, **options}
    basis = setup.basis
    w = basis.solver.dictionary
    x = ds[S.ACTIVATIONS].values[0, 0].astype(np.float64)
    g = ds[S.GRADIENTS].values[0, 0].astype(np.float64)
    mask = ds[S.ATTENTION_MASK].values if S.ATTENTION_MASK in ds else np.ones(g.shape[:2], bool)
    held = mask & ~setup.fit[:, None]
    frac = setup.options.active_fraction

    def share(rows, q):
        return np.sum((rows @ q) ** 2) / np.sum(rows * rows)

    def active(point, w=w):
        z = nnls(w.T, point)[0]
        return (z * np.linalg.norm(w, axis=1) > frac * np.linalg.norm(z @ w)) & (z > 0)

    def local_share(grad, atoms, w=w):
        if not atoms.any():
            return 0.0
        q = scipy.linalg.orth(w[atoms].T)
        return float(np.sum((q.T @ grad) ** 2) / (grad @ grad))

    def radial_share(grad, point):
        return (grad @ point) ** 2 / (grad @ grad) / (point @ point)

    # the null's pool: the fit subsample's own active sets (drawn as the definition says)
    rows, pairs = sample_positions(fit_positions(ds, setup.fit, setup.options.positions), opts["subsample"],
                                   opts.get("seed", 0))
    points = np.array([x[rows[a], b] for a, b in pairs])
    pool = [active(p) for p in points]
    keys = position_keys(np.arange(g.shape[0]), (0, g.shape[1]), opts.get("seed", 0) + NULL_STREAM)
    sel_g, sel_x = g[held], x[held]
    partner = [int(k % np.uint64(len(pool))) for k in keys[held]]
    locals_ = np.array([local_share(gi, active(xi)) for gi, xi in zip(sel_g, sel_x, strict=True)])
    nulls = np.array([local_share(gi, pool[j]) for gi, j in zip(sel_g, partner, strict=True)])
    radial = np.array([radial_share(gi, xi) for gi, xi in zip(sel_g, sel_x, strict=True)])
    radial_null = np.array([radial_share(gi, points[j]) for gi, j in zip(sel_g, partner, strict=True)])
    moment = sel_g.T @ sel_g
    mu, u = np.linalg.eigh(moment)
    mu, u = mu[::-1], u[:, ::-1]
    k = basis.tangent.shape[1]
    # PCA of the same fit subsample: un-centred (matched to the semi-NMF) and centred
    q_p = np.linalg.svd(points, full_matrices=False)[2][:k].T
    q_c = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)[2][:k].T
    # the refitting bootstrap: replicate b weighs every sample by column b of its Poisson(1) draws,
    # its frames are the replicate's refit (checked against the resampled points below), and every
    # interval statistic is recomputed position by position on the weighted held-out half
    boot = opts["bootstrap"]
    seed = opts.get("seed", 0)
    # the scoring subsample: the held-out positions with the smallest BOOT_STREAM keys
    boot_keys = position_keys(np.arange(g.shape[0]), (0, g.shape[1]), seed + BOOT_STREAM)
    limit = setup.options.bootstrap_positions
    scored = held & (boot_keys <= np.sort(boot_keys[held])[min(limit, held.sum()) - 1])
    owners = rows[pairs[:, 0]]
    main_pool = pool

    def weighted(frame_t, frame_p, w_dict, frame_pool, where, b):
        """[t, p, n, local, null, count] over positions in ``where``, weighted by replicate b."""
        out = np.zeros(6)
        for s in np.flatnonzero(where.any(axis=1)):
            weight = np.random.default_rng([0xB007, seed, s]).poisson(1.0, boot)[b]
            at = np.flatnonzero(where[s])
            if not weight:
                continue
            gs, xs, ks = g[s][at], x[s][at], keys[s][at]
            out += weight * np.array([
                np.sum((gs @ frame_t) ** 2), np.sum((gs @ frame_p) ** 2), np.sum(gs * gs),
                sum(local_share(gi, active(xi, w_dict), w_dict) for gi, xi in zip(gs, xs, strict=True)),
                sum(local_share(gi, frame_pool[int(kk % np.uint64(len(frame_pool)))], w_dict)
                    for gi, kk in zip(gs, ks, strict=True)), len(gs)])
        return out

    def ratios(v):
        t, p, n, loc, nul, c = v
        return np.array([t / n, t / p, loc / c, nul / c, (loc - nul) / c])

    values = np.zeros((boot, 5))
    for b, frame in enumerate(basis.replicates):
        times = np.array([np.random.default_rng([0xB007, seed, o]).poisson(1.0, boot)[b] for o in owners])
        resampled = np.repeat(points, times, axis=0)
        np.testing.assert_allclose(np.abs(frame.pca.T @ np.linalg.svd(resampled, full_matrices=False)[2][:k].T),
                                   np.eye(k), atol=1e-6)
        w_b = frame.solver.dictionary
        pool_b = [active(p, w_b) for p in resampled[:limit]]
        # the replicate's held-out half under the main fit, plus the paired change of its own refit
        # on the scoring subsample (the whole held-out half when it is no larger)
        values[b] = (ratios(weighted(basis.tangent, q_p, w, main_pool, held, b))
                     + ratios(weighted(frame.tangent, frame.pca, w_b, pool_b, scored, b))
                     - ratios(weighted(basis.tangent, q_p, w, main_pool, scored, b)))

    def interval(estimate, values):
        half = student_t.ppf(0.95, len(values) - 1) * np.std(values, ddof=1)
        return np.array([estimate - half, estimate + half])

    e_t, e_p = share(sel_g, basis.tangent), share(sel_g, q_p)
    return {
        N.TANGENT_ENERGY: e_t,
        N.PCA_ENERGY: e_p,
        N.PCA_ENERGY_CENTRED: share(sel_g, q_c),
        N.TANGENT_ENRICHMENT_VS_PCA: e_t / e_p,
        N.OPTIMAL_ENERGY: mu[:k].sum() / mu.sum(),
        N.ACTIVATION_ENERGY: share(sel_x, basis.tangent),
        N.TANGENT_ALIGNMENT_WEIGHTED: sum(mu[i] * np.sum((basis.tangent.T @ u[:, i]) ** 2) for i in range(k))
        / mu[:k].sum(),
        N.LOCAL_TANGENT_ENERGY: locals_.mean(), N.LOCAL_TANGENT_NULL: nulls.mean(),
        N.LOCAL_TANGENT_EXCESS: locals_.mean() - nulls.mean(), N.RADIAL_ENERGY: radial.mean(),
        N.RADIAL_NULL: radial_null.mean(), N.RADIAL_EXCESS: radial.mean() - radial_null.mean(),
        N.TANGENT_ENERGY_CI: interval(e_t, values[:, 0]),
        N.TANGENT_ENRICHMENT_VS_PCA_CI: interval(e_t / e_p, values[:, 1]),
        N.LOCAL_TANGENT_ENERGY_CI: interval(locals_.mean(), values[:, 2]),
        N.LOCAL_TANGENT_NULL_CI: interval(nulls.mean(), values[:, 3]),
        N.LOCAL_TANGENT_EXCESS_CI: interval(locals_.mean() - nulls.mean(), values[:, 4]),
        "per_position": (locals_, nulls),
    }


@pytest.mark.parametrize("scored", [None, 70])  # the whole held-out half, or a scoring subsample of it
def test_every_new_name_matches_the_float64_reference(scored):
    rng = np.random.default_rng(0)
    acts, _, _ = sparse_layer(rng)
    mask = np.ones((N_SAMPLES, T), bool)
    mask[::4, -3:] = False
    grads = rng.standard_normal((N_SAMPLES, T, D)) * np.linspace(0.2, 2, D)
    ds = dataset(acts, grads, mask)
    options = {} if scored is None else {"bootstrap_positions": scored}
    setup, out = run(ds, options)
    want = reference(ds, setup, options)
    for name, value in want.items():
        if name != "per_position":  # the radial null pairs float32 unit directions (tangent_sums): ~1e-10 off
            atol = 1e-9 if name in (N.RADIAL_NULL, N.RADIAL_EXCESS) else 0.0
            np.testing.assert_allclose(out[name], value, rtol=1e-8, atol=atol, err_msg=name)
    q_p = setup.basis.pca
    assert out[N.TANGENT_METRIC_REASON] == (0 if setup.basis.fit_converged else REASON_UNCONVERGED)
    assert set(out) == {v.name for v in TangentEnrichment().variables(Context(
        N_SAMPLES, T, D, metrics=(N.TANGENT,), params={N.TANGENT: setup}))}
    assert q_p.shape == (D, R)


def test_subspace_stability_is_the_mean_cos2_of_the_principal_angles():
    from tgo_analysis.kernels.seminmf import fit_seminmf
    from tgo_analysis.kernels.tangent_energy import tangent_basis

    rng = np.random.default_rng(1)
    acts, _, _ = sparse_layer(rng)
    ds = dataset(acts, rng.standard_normal((N_SAMPLES, T, D)))
    setup, out = run(ds)
    rows, pairs = sample_positions(fit_positions(ds, setup.fit, setup.options.positions), OPTIONS["subsample"], 1)
    twin_points = np.array([acts[rows[a], b] for a, b in pairs], dtype=np.float32).astype(np.float64)
    twin = tangent_basis(fit_seminmf(twin_points, R, iterations=OPTIONS["iterations"],
                                     tolerance=OPTIONS["tolerance"], seed=1).dictionary)
    angles = scipy.linalg.subspace_angles(setup.basis.tangent, twin)
    assert out[N.TANGENT_SUBSPACE_STABILITY] == pytest.approx(np.mean(np.cos(angles) ** 2), rel=1e-8)
    assert out[N.TANGENT_SUBSPACE_STABILITY] > 0.99  # a planted, well-fitted layer is stable


def test_an_aggregate_without_the_refits_is_refused():
    """The bootstrap's refits and the stability twin are ``finish_unit``'s, which the engine runs beside
    the fold: a unit reduced from the prepared context alone says so instead of giving fixed-basis intervals."""
    import dask.array as da

    from tgo_store.errors import TgoError

    rng = np.random.default_rng(2)
    acts, _, _ = sparse_layer(rng)
    ds = dataset(acts, rng.standard_normal((N_SAMPLES, T, D)))
    stat = TangentEnrichment()
    ctx = Context(N_SAMPLES, T, D, metrics=(N.TANGENT,), params={stat.name: OPTIONS})
    ctx = Context(N_SAMPLES, T, D, metrics=(N.TANGENT,), params={stat.name: stat.prepare(ds, ctx)})
    source = UnitSource(LazySlab(da.from_array(ds[S.ACTIVATIONS].values[0, 0], chunks=(16, T, D))),
                        {S.GRADIENTS: LazySlab(da.from_array(ds[S.GRADIENTS].values[0, 0], chunks=(16, T, D)))})
    unit = unit_context(ctx, [stat], 0, 0, source)
    assert not unit.ctx.params[stat.name].basis.replicates  # prepare_unit fits only what the fold needs
    with pytest.raises(TgoError, match="finish_unit"):
        reduce_unit(source, [stat], unit.ctx, Plan(((0, T),), threads=2))


def test_the_scoring_in_parts_equals_the_aggregate_s_own():
    """The engine scores the bootstrap's replicates in parts at once (``aggregate_parts``); an aggregate
    given none (a cluster's merged partial, ``partial_results``) scores them itself, to the same numbers."""
    import dataclasses

    from tgo_analysis.engine.graph import fold_partials, partial_results

    rng = np.random.default_rng(4)
    acts, _, _ = sparse_layer(rng)
    ds = dataset(acts, rng.standard_normal((N_SAMPLES, T, D)) * np.linspace(0.2, 2, D))
    stat, source, unit = prepared_unit(ds)
    assert stat.aggregate_parts(unit.ctx) == 1 + -(-OPTIONS["bootstrap"] // 5)  # the main side, then each group
    fit = unit.fits[stat.name]
    finished = stat.finish_join([stat.finish_unit(fit, unit.ctx, p) for p in range(stat.finish_parts(unit.ctx))],
                                unit.ctx)
    ctx = dataclasses.replace(unit.ctx, params={**unit.ctx.params, stat.name: finished})
    plan = Plan(((0, T),), threads=2)
    parted = reduce_unit(source, [stat], unit, plan)
    alone = partial_results(fold_partials(source, [stat], ctx, plan, [(0, T)]), [stat], ctx, [(0, T)], 2)
    assert np.isfinite(parted[N.LOCAL_TANGENT_EXCESS_CI]).all()
    for name, value in parted.items():
        np.testing.assert_array_equal(value, alone[name], err_msg=name)


def test_gradients_sharing_only_the_activation_covariance_are_not_tangent():
    """The reviewer's null: g ~ N(0, Σ_x) independently of x: anisotropic, with no tangent structure."""
    rng = np.random.default_rng(2)
    acts, _, _ = sparse_layer(rng, atoms=6, active=3)
    flat = acts.reshape(-1, D)
    cov = np.cov(flat.T)
    grads = rng.multivariate_normal(np.zeros(D), cov, size=(N_SAMPLES, T))
    ds = dataset(acts, grads)
    setup, out = run(ds, {"rank": 6})
    assert out[N.TANGENT_ENRICHMENT] > 3  # the paper's normal controls are fooled...
    assert out[N.TANGENT_ENRICHMENT_VS_PCA] < 1.05  # ...the matched-rank PCA baseline is not
    locals_, nulls = reference(ds, setup, {"rank": 6})["per_position"]
    spread = np.sqrt(locals_.var() / locals_.size + nulls.var() / nulls.size)
    assert abs(out[N.LOCAL_TANGENT_ENERGY] - out[N.LOCAL_TANGENT_NULL]) < 4 * spread


def test_gradients_in_the_face_of_each_positions_active_atoms_are_locally_tangent():
    """g_i in the span of the atoms active at x_i (the fitted atoms: semi-NMF identifies the row
    space, not the atoms, so the face is the one the statistic can see)."""
    rng = np.random.default_rng(3)
    acts, _, _ = sparse_layer(rng, atoms=8, active=1)
    options = {"rank": 8}
    setup, _ = run(dataset(acts, rng.standard_normal(acts.shape)), options)
    solver = setup.basis.solver
    faces = active_atoms(nonnegative_codes(acts.reshape(-1, D), solver), solver.dictionary,
                         setup.options.active_fraction)
    grads = ((rng.standard_normal(faces.shape) * faces) @ solver.dictionary).reshape(acts.shape)
    grads += 1e-4 * rng.standard_normal(acts.shape)
    _, out = run(dataset(acts, grads), options)
    assert out[N.LOCAL_TANGENT_ENERGY] > 0.99
    assert out[N.LOCAL_TANGENT_NULL] < 0.85  # a fitted face holds more than the one planted atom
    assert out[N.LOCAL_TANGENT_EXCESS] == pytest.approx(out[N.LOCAL_TANGENT_ENERGY] - out[N.LOCAL_TANGENT_NULL])
    assert out[N.LOCAL_TANGENT_EXCESS_CI][0] > 0.1
    assert out[N.TANGENT_ENERGY] > 0.99  # inside span(W) too: the global test cannot tell these apart


def test_the_mean_direction_beats_only_the_centred_pca_baseline():
    """Gradients along the activations' mean direction (inside Q_T, almost no variance): enrichment
    over the normal controls and over the centred PCA subspace, which misses the mean, but not over
    the matched (un-centred) PCA subspace, which holds it as the semi-NMF does (SPEC 8)."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((R, D))
    codes = rng.exponential(size=(N_SAMPLES, T, R))
    codes[..., 0] = 5.0  # atom 0: a constant offset, the mean direction, no variance
    acts = codes @ w + 1e-3 * rng.standard_normal((N_SAMPLES, T, D))
    grads = rng.standard_normal((N_SAMPLES, T, 1)) * w[0] + 1e-3 * rng.standard_normal((N_SAMPLES, T, D))
    _, out = run(dataset(acts, grads))
    assert out[N.TANGENT_ENRICHMENT] > 0.5 * D / R
    assert out[N.TANGENT_ENERGY] / out[N.PCA_ENERGY_CENTRED] > 3
    assert out[N.TANGENT_ENRICHMENT_VS_PCA] == pytest.approx(1, abs=1e-3)
    assert out[N.TANGENT_ENRICHMENT_VS_PCA_CI][0] <= 1 <= out[N.TANGENT_ENRICHMENT_VS_PCA_CI][1] + 1e-9
    assert out[N.OPTIMAL_ENERGY] >= out[N.TANGENT_ENERGY] - 1e-12


def test_gradients_of_the_fit_split_change_nothing():
    rng = np.random.default_rng(5)
    acts, _, _ = sparse_layer(rng)
    grads = rng.standard_normal((N_SAMPLES, T, D))
    setup, first = run(dataset(acts, grads))
    changed = grads.copy()
    changed[setup.fit] = 1e3 * rng.standard_normal(changed[setup.fit].shape)
    _, second = run(dataset(acts, changed))
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)
    assert 0 < setup.fit.sum() < N_SAMPLES


def test_bootstrap_interval_holds_the_estimate_is_seeded_and_ignores_chunking():
    rng = np.random.default_rng(6)
    acts, _, _ = sparse_layer(rng)
    ds = dataset(acts, rng.standard_normal((N_SAMPLES, T, D)))
    _, a = run(ds, rows=16)
    _, b = run(ds, rows=5)
    _, c = run(ds, {"seed": 9}, rows=16)
    # a scoring subsample smaller than the held-out half: the same bottom-k positions whatever the chunks
    _, a_sub = run(ds, {"bootstrap_positions": 60}, rows=16)
    _, b_sub = run(ds, {"bootstrap_positions": 60}, rows=5)
    for name in (N.TANGENT_ENERGY_CI, N.LOCAL_TANGENT_EXCESS_CI):
        np.testing.assert_allclose(b_sub[name], a_sub[name], rtol=1e-10)
        assert not np.array_equal(a_sub[name], a[name])
    for point, interval in ((N.TANGENT_ENERGY, N.TANGENT_ENERGY_CI),
                            (N.TANGENT_ENRICHMENT_VS_PCA, N.TANGENT_ENRICHMENT_VS_PCA_CI),
                            (N.LOCAL_TANGENT_ENERGY, N.LOCAL_TANGENT_ENERGY_CI),
                            (N.LOCAL_TANGENT_NULL, N.LOCAL_TANGENT_NULL_CI),
                            (N.LOCAL_TANGENT_EXCESS, N.LOCAL_TANGENT_EXCESS_CI)):
        low, high = a[interval]
        assert low <= a[point] <= high and low < high, interval
        np.testing.assert_allclose(b[interval], a[interval], rtol=1e-10)
        assert not np.array_equal(c[interval], a[interval])


def test_an_unconverged_fit_is_flagged():
    rng = np.random.default_rng(7)
    acts, _, _ = sparse_layer(rng)
    _, out = run(dataset(acts, rng.standard_normal((N_SAMPLES, T, D))), {"iterations": 2})
    assert out[N.TANGENT_METRIC_REASON] == REASON_UNCONVERGED


@pytest.mark.parametrize("exclude_first", [False, True])
def test_exclude_first_keeps_the_first_positions_out_of_fit_and_gradients(exclude_first):
    rng = np.random.default_rng(8)
    acts, _, _ = sparse_layer(rng)
    grads = rng.standard_normal((N_SAMPLES, T, D))
    runs = []
    for junk in (1.0, 50.0):
        a, g = acts.copy(), grads.copy()
        a[:, 0] = junk * rng.standard_normal((N_SAMPLES, D))
        g[:, 0] = junk * rng.standard_normal((N_SAMPLES, D))
        runs.append(run(dataset(a, g), positions={"exclude_first": exclude_first})[1])
    same = np.isclose(runs[0][N.TANGENT_ENERGY], runs[1][N.TANGENT_ENERGY], rtol=1e-12)
    assert same == exclude_first


def test_masked_positions_are_those_the_ingest_masked():
    torch = pytest.importorskip("torch")
    from tgo_store.capture.losses import MASKED_LM, LossSpec, masked_inputs

    rng = np.random.default_rng(9)
    ids = torch.as_tensor(rng.integers(4, 40, (5, 12)))
    valid = torch.as_tensor(rng.random((5, 12)) > 0.2)
    special = torch.zeros(5, 12, dtype=torch.bool)
    special[:, 0] = True
    samples = np.array([3, 8, 11, 12, 40])
    loss = LossSpec(MASKED_LM, mask_rate=0.3, seed=7)
    _, where = masked_inputs(ids, valid, special, samples, loss, mask_token_id=1)
    ours = masked_lm_positions(samples, 12, valid.numpy(), special.numpy(), 0.3, 7)
    np.testing.assert_array_equal(ours, where.numpy())


def test_masked_lm_positions_enter_no_frequency_bucket():
    """The model saw the mask token at masked positions: they are not bucketed by the original id."""
    from tgo_analysis.kernels.buckets import frequency_edges, position_buckets
    from tgo_analysis.kernels.tangent_sums import FREQUENCY_STREAM

    rng = np.random.default_rng(10)
    acts, _, _ = sparse_layer(rng)
    grads = rng.standard_normal(acts.shape) * np.linspace(0.2, 3, D)
    ids = rng.integers(0, 6, size=(N_SAMPLES, T))
    mask = np.ones((N_SAMPLES, T), bool)
    ds = dataset(acts, grads, mask).assign_coords(
        {S.TOKEN_ID: ((S.SAMPLE, S.TOKEN), ids.astype(np.int32)), S.SAMPLE: 100 + np.arange(N_SAMPLES)})
    ds[S.VOCAB_COUNT] = ((S.VOCAB,), np.bincount(ids.ravel(), minlength=6))
    ds.attrs[S.ATTR_LOSS] = {"kind": "masked_lm", "mask_rate": 0.5, "seed": 3}
    count = 12
    setup, out = run(ds, {"frequency_count": count})
    masked = masked_lm_positions(100 + np.arange(N_SAMPLES), T, mask, None, 0.5, 3)
    assert 0.3 < masked.mean() < 0.7
    seen = mask & ~setup.fit[:, None] & ~masked
    counts = ds[S.VOCAB_COUNT].values
    buckets = position_buckets(ids, counts, frequency_edges(counts), seen)
    keys = position_keys(np.arange(N_SAMPLES), (0, T), FREQUENCY_STREAM)
    g = grads.astype(np.float32).astype(np.float64)
    checked = 0
    for b in range(buckets.max() + 1):
        inside = np.flatnonzero(buckets.ravel() == b)
        if inside.size < count:
            continue
        rows = g.reshape(-1, D)[inside[np.argsort(keys.ravel()[inside])[:count]]]
        want = np.sum((rows @ setup.basis.tangent) ** 2) / np.sum((rows @ setup.basis.pca) ** 2)
        np.testing.assert_allclose(out[N.TANGENT_ENRICHMENT_VS_PCA_BY_FREQUENCY][b], want, rtol=1e-8)
        checked += 1
    assert checked >= 1
