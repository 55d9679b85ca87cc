"""``analyze``: the metrics of SPEC sections 2-3 for every (checkpoint, layer), out of core.

Orchestration only: choose the statistics (``selection``), lay out the results
(``results_template``), create or resume the results store (``results_store``), then reduce
each (checkpoint, layer) unit within the memory budget (``units``, ``budget``,
``reductions.engine``) and write it before the next, marking it done so a re-run skips it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import xarray as xr

from tgo_analysis import names as N
from tgo_analysis.device import check_device
from tgo_analysis.metrics import DEFAULT_FIT_RANGE, metric_attrs
from tgo_analysis.reductions.all_tokens import AllTokensParams, all_tokens_rank, resolve_method
from tgo_analysis.reductions.base import Context, Statistic
from tgo_analysis.reductions.intrinsic import IntrinsicDimension
from tgo_analysis.results_store import add_clusters, finish, mark_done, prepare_output, write_unit
from tgo_analysis.results_template import build_template, result_coords
from tgo_analysis.selection import (
    ALL_TOKENS_METHODS,
    Options,
    chosen_statistics,
    parse_metrics,
    selectable,
)
from tgo_analysis.units import unit_context, unit_plan, unit_source, unit_task
from tgo_store import schema as S
from tgo_store.errors import TgoError

METRICS = selectable()


def _validate(ds: xr.Dataset, opts: Options) -> xr.DataArray:
    act = S.validate_activations(ds)
    n_samples, n_features = act.sizes[S.SAMPLE], act.sizes[S.FEATURE]
    if n_samples < 3:
        raise TgoError(f"the store has {n_samples} samples; covariance metrics need at least 3 samples")
    if opts.wants(N.ALPHA):
        lo, hi = opts.fit_range
        if lo < 1 or hi < lo + 4:
            raise TgoError(f"alpha fit range {lo}:{hi} is invalid; give FIRST:LAST ranks with LAST >= FIRST + 4, e.g. 11:100")
        max_rank = min(n_samples - 1, n_features) - 10
        if max_rank < lo + 4:
            need = lo + 14
            raise TgoError(f"alpha fit range {lo}:{hi} lies beyond the spectrum: the covariance has at most "
                           f"{min(n_samples - 1, n_features)} nonzero eigenvalues (samples {n_samples}, features {n_features}); "
                           f"alpha needs at least {need + 1} samples and {need} features, or a lower range such as --fit-range 2:{max(6, max_rank)}")
    if opts.wants(N.INTRINSIC_DIMENSION) and min(n_samples, opts.id_samples) < 10:
        raise TgoError(f"intrinsic dimension needs at least 10 samples, got {min(n_samples, opts.id_samples)}; "
                       "raise --id-samples or leave intrinsic_dimension out of --metrics")
    return act


def _context(ds: xr.Dataset, act: xr.DataArray, opts: Options, stats: list[Statistic], params: dict) -> Context:
    """The analysis-wide context: sizes, options, and every statistic's ``prepare``d parameters."""
    _, _, n, t, d = act.shape
    params = {IntrinsicDimension().name: opts.id_samples, **params}
    n_rank = d
    if opts.all_tokens_on:
        method = resolve_method(opts.all_tokens, n)
        params[N.ALL_TOKENS] = AllTokensParams(method, opts.svd_rank, opts.power_iters)
        n_rank = max(d, all_tokens_rank(params[N.ALL_TOKENS], n, t * d))
    ctx = Context(n, t, d, n_rank, act.dtype.itemsize, opts.metrics, opts.fit_range, opts.seed, params, opts.device)
    for stat in stats:
        hook = getattr(stat, "prepare", None)
        if hook is not None:
            ctx = dataclasses.replace(ctx, params={**ctx.params, stat.name: hook(ds, ctx)})
    return ctx


def analyze(ds: xr.Dataset, metrics: Sequence[str] | str = "all", *, out: str | None = None,
            overwrite: bool = False, fit_range: tuple[int, int] = DEFAULT_FIT_RANGE, id_samples: int = 2000,
            n_clusters: int = 4, use_umap: bool = False, all_tokens: str = "auto", svd_rank: int = 200,
            power_iters: int = 4, seed: int = 0, scheduler: str | None = None, workers: int | None = None,
            memory_limit: str | None = None, progress: bool = True, checkpoints: Sequence[int] | None = None,
            device: str = "cpu", memory_budget: int | str | None = None, params: dict | None = None) -> xr.Dataset:
    """The metrics of SPEC section 3 for every (checkpoint, layer, token), out of core.

    ``checkpoints`` (indices) limits this call to those checkpoints (a sweep analyses each one
    as soon as it is ingested). ``device``: "cpu", "cuda[:N]" (per-token spectra on a GPU) or
    "torch:cpu" (that path on the CPU, for tests). ``memory_budget`` (bytes or "4GB"; default a
    fraction of RAM or of the Dask worker's limit) bounds the accumulators: a layer whose
    per-token accumulators do not fit is reduced in several passes over token groups.
    ``params`` seeds per-statistic parameters (``{statistic name: value}``).
    """
    from tgo_analysis.progress import UnitProgress
    from tgo_analysis.provenance import provenance
    from tgo_analysis.scheduler import scheduler_context

    if all_tokens not in ALL_TOKENS_METHODS:
        raise TgoError(f"unknown --all-tokens {all_tokens}; use auto, gram, randomized or off")
    if power_iters < 4 and all_tokens != "gram":
        raise TgoError(f"--power-iters {power_iters} is below 4; truncated spectra without power iterations inflate alpha")
    opts = Options(parse_metrics(metrics, ds), (int(fit_range[0]), int(fit_range[1])), int(id_samples),
                   int(n_clusters), bool(use_umap), all_tokens, int(svd_rank), int(power_iters), int(seed),
                   check_device(device))
    act = _validate(ds, opts)
    stats = chosen_statistics(opts)
    ctx = _context(ds, act, opts, stats, dict(params or {}))
    rc = result_coords(act, ctx.n_rank)
    template = build_template(act, rc, stats, ctx)
    chosen = range(len(rc.checkpoints)) if checkpoints is None else sorted(set(checkpoints))
    layers = range(len(rc.layers))
    if memory_budget is not None or (scheduler is None and workers is None):  # refuse a hopeless budget up front
        unit_plan(unit_source(ds, act, 0, 0, stats), stats, ctx, memory_budget)
    config = {"metrics": list(opts.metrics), "fit_range": list(opts.fit_range), "id_samples": opts.id_samples,
              "n_clusters": opts.n_clusters, "use_umap": opts.use_umap, "all_tokens": opts.all_tokens,
              "svd_rank": opts.svd_rank, "power_iters": opts.power_iters, "seed": opts.seed,
              "shape": [int(s) for s in act.shape], "source": str(ds.encoding.get("source", "")),
              "params": json.loads(json.dumps(params or {}, sort_keys=True, default=str))}
    done = prepare_output(out, template, config, overwrite) if out else set()
    units = [(ci, li) for ci in chosen for li in layers if (ci, li) not in done]
    computed: dict[tuple[int, int], dict] = {}
    passes: list[int] = []
    started = time.perf_counter()
    with scheduler_context(scheduler, workers, memory_limit) as where, \
            UnitProgress(len(units), len(done), enabled=progress) as bar:
        def keep(ci: int, li: int, arrays: dict, k: int) -> None:
            passes.append(k)
            if out:
                write_unit(out, ci, li, arrays, template)
                mark_done(out, ci, li)
            else:
                computed[(ci, li)] = arrays
            bar.advance()

        def said(ci: int, li: int) -> Any:
            def on_pass(i: int, k: int) -> None:
                if k > 1:
                    bar.message(f"(checkpoint {ci}, layer {li}): pass {i + 1} of {k} over token groups "
                                "(the accumulators exceed the memory budget in one pass)")
            return on_pass

        if where == "threaded":
            for ci, li in units:
                source = unit_source(ds, act, ci, li, stats)
                arrays, k = unit_task(source, stats, unit_context(ds, ctx, stats, ci, li, source), memory_budget,
                                      on_pass=said(ci, li))
                keep(ci, li, arrays, k)
        else:
            _on_cluster(ds, act, stats, ctx, units, memory_budget, keep)
    elapsed = time.perf_counter() - started
    read_bytes = len(units) * act.dtype.itemsize * ctx.n_samples * ctx.n_tokens * ctx.n_features
    attrs = {**provenance(where), **metric_attrs(opts.fit_range), "tgo_config": config,
             "all_tokens_method": ctx.params[N.ALL_TOKENS].method if opts.all_tokens_on else "off",
             "svd_rank": opts.svd_rank, "power_iters": opts.power_iters, "device": opts.device,
             "token_passes": max(passes, default=1),
             "read_amplification": f"each unit's blocks were read {max(passes, default=1)} x (one pass per token group "
                                   "whose accumulators fit the memory budget)",
             "intrinsic_dimension": f"TwoNN, linear fit through the origin, discard fraction 0.1, on at most "
                                    f"{opts.id_samples} seeded samples (seed {opts.seed}) of un-centred vectors of all tokens concatenated",
             "token_correlation": "Pearson r between tokens' flattened (sample x feature) activations from float64 Gram sums",
             "rank_padding": "eigenvalue arrays share the `rank` dim; ranks beyond a spectrum's length are NaN",
             "input_attrs": json.dumps({k: v for k, v in ds.attrs.items()}, default=str)}
    for stat in stats:
        attrs.update(getattr(stat, "attrs", lambda c: {})(ctx))
    result = finish(out, template, computed, attrs)
    if opts.wants(N.ALPHA_CLUSTER) and N.ALPHA in result:
        result = add_clusters(result, out, opts.n_clusters, opts.use_umap, opts.seed)
    if progress:
        print(f"analyzed {len(units)} (checkpoint, layer) units ({len(done)} reused) on {where}: "
              f"{read_bytes / 1e6:.1f} MB read x {max(passes, default=1)} in {elapsed:.1f} s "
              f"({read_bytes / max(elapsed, 1e-9) / 1e9:.2f} GB/s)", file=sys.stderr)
    return result


def _on_cluster(ds: xr.Dataset, act: xr.DataArray, stats: list[Statistic], ctx: Context,
                units: list[tuple[int, int]], budget: Any, keep: Any) -> None:
    """One task per unit on the Dask cluster, as many at once as it has worker threads."""
    import dask
    from distributed import get_client

    width = max(1, sum(get_client().nthreads().values()))
    for start in range(0, len(units), width):
        batch = units[start:start + width]
        tasks = []
        for ci, li in batch:
            source = unit_source(ds, act, ci, li, stats)
            tasks.append(dask.delayed(unit_task)(source, stats, unit_context(ds, ctx, stats, ci, li, source), budget, 1))
        for (ci, li), (arrays, k) in zip(batch, dask.compute(*tasks), strict=True):
            keep(ci, li, arrays, k)
