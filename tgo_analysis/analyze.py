"""``analyze``: the metrics of SPEC sections 2-3 for every (checkpoint, layer), out of core.

Orchestration only: choose the statistics (``results.selection``), check and prepare them
with their own options, lay out the results (``results.template``), create or resume the
results store (``results.store``), then reduce each (checkpoint, layer) unit within the memory
budget (``engine``) and write it before the next, marking it done so a re-run skips it. It
names no statistic: what a statistic needs it declares (options, hooks).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from tgo_analysis.engine.budget import parse_budget
from tgo_analysis.engine.device import device_backend
from tgo_analysis.engine.units import (
    item_context,
    item_source,
    item_task,
    per_unit,
    unit_plan,
    unit_source,
    unit_tasks,
    work_items,
)
from tgo_analysis.kernels.metrics import metric_attrs
from tgo_analysis.results.completeness import record_expected
from tgo_analysis.results.selection import chosen_statistics, derived, parse_metrics, selectable
from tgo_analysis.results.store import (
    add_variable,
    done_items,
    finish,
    mark_done,
    mark_item_done,
    prepare_output,
    write_unit,
)
from tgo_analysis.results.template import build_template, result_coords
from tgo_analysis.results.writer import results_writer
from tgo_analysis.statistics import declared_options
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.device_option import resolve_device
from tgo_store.errors import TgoError
from tgo_store.store import schema as S

METRICS = selectable()


def analysis_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared statistic option: the given values checked, the others at their defaults."""
    declared = declared_options()
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TgoError(f"unknown analysis option {', '.join(unknown)}; the statistics declare "
                       f"{', '.join(sorted(declared))}")
    return {name: option.check(given.get(name, option.default)) for name, option in declared.items()}


def _context(ds: xr.Dataset, act: xr.DataArray, metrics: tuple[str, ...], seed: int, device: str, options: dict[str, Any], params: dict,
             memory_budget: Any = None) -> tuple[Context, list[StatisticBase]]:
    """The analysis-wide context and its statistics: validated, ``prepare``d, the rank dim sized."""
    c, n_layers, n, t, d = act.shape
    if n < 3:
        raise TgoError(f"the store has {n} samples; covariance metrics need at least 3 samples")
    ctx = Context(n, t, d, d, act.dtype.itemsize, metrics, seed=seed, params=params, device=device, options=options,
                  backend=device_backend(device), memory_budget=parse_budget(memory_budget), n_checkpoints=c,
                  n_layers=n_layers)
    stats = chosen_statistics(ctx)
    for stat in stats:
        stat.validate(ds, ctx)
    for stat in stats:
        prepared = stat.prepare(ds, ctx)
        if prepared is not None:
            ctx = dataclasses.replace(ctx, params={**ctx.params, stat.name: prepared})
    n_rank = max(d, *(stat.rank_length(ctx) for stat in stats)) if stats else d
    return dataclasses.replace(ctx, n_rank=n_rank), stats


IN_MEMORY_SAMPLE_BLOCK = 256  # samples per block when ``analyze`` is given a numpy-backed dataset


@results_writer
def analyze(ds: xr.Dataset, metrics: Sequence[str] | str = "all", *, out: str | None = None,
            overwrite: bool = False, seed: int = 0, scheduler: str | None = None, workers: int | None = None,
            memory_limit: str | None = None, progress: bool = True, checkpoints: Sequence[int] | None = None,
            device: str = "cpu", memory_budget: int | str | None = None, params: dict | None = None,
            ready_checkpoints: Sequence[int] | None = None, **options: Any) -> xr.Dataset:
    """The metrics of SPEC sections 2-3 (and 5) for every (checkpoint, layer, token), out of core.

    ``checkpoints`` (indices) limits this call to those checkpoints (a sweep analyses each one
    as soon as it is ingested). ``device``: "cpu", "cuda[:N]" (per-token spectra on a GPU) or
    "torch:cpu" (that path on the CPU, for tests). ``memory_budget`` (bytes or "4GB"; default a
    fraction of RAM or of the Dask worker's limit) bounds the accumulators: a layer whose
    per-token accumulators do not fit is reduced in several passes over token groups.
    ``options`` are the statistics' own options (``fit_range=``, ``n_clusters=``, ``id_samples=``, ``all_tokens=``,
    ``exclude_special=``, ``tangent_rank=``, ...: ``tgo analyze --help`` lists them);
    ``params`` seeds per-statistic parameters directly (``{statistic name: value}``).
    The result's attrs record how many units were computed and reused, the bytes read and the
    time (``analysis_summary``), which ``tgo analyze`` prints. Statistics over several slabs (SPEC
    section 6) run as multi-slab units (``engine.units.work_items``); ``ready_checkpoints`` (indices,
    default all) are those whose activations may be read as a unit's partner (a sweep passes
    the ingested ones).
    """
    from tgo_analysis.engine.scheduler import scheduler_context
    from tgo_analysis.results.provenance import provenance
    from tgo_store.progress import UnitProgress

    chosen_metrics = parse_metrics(metrics, ds)
    act = S.validate_activations(ds)
    if act.chunks is None:  # an in-memory dataset (numpy-backed): the engine reads dask blocks of samples
        ds = ds.chunk({S.SAMPLE: IN_MEMORY_SAMPLE_BLOCK})
        act = ds[S.ACTIVATIONS]
    option_values = analysis_options(options)
    ctx, stats = _context(ds, act, chosen_metrics, int(seed), resolve_device(device, numpy_cpu=True), option_values,
                          dict(params or {}), memory_budget)
    rc = result_coords(act, ctx.n_rank)
    template = build_template(act, rc, stats, ctx)
    unit_stats = per_unit(stats)
    chosen = range(len(rc.checkpoints)) if checkpoints is None else sorted(set(checkpoints))
    layers = range(len(rc.layers))
    given_budget = None if memory_budget is None else ctx.memory_budget  # a cluster's default is per worker
    if memory_budget is not None or (scheduler is None and workers is None):  # refuse a hopeless budget up front
        unit_plan(unit_source(ds, act, 0, 0, unit_stats), unit_stats, ctx, ctx.memory_budget)
    config = {"metrics": list(chosen_metrics), "seed": int(seed), "options": option_values,
              "shape": [int(s) for s in act.shape], "source": str(ds.encoding.get("source", "")),
              "params": json.loads(json.dumps(params or {}, sort_keys=True, default=str))}

    def config_at(n: int) -> dict:  # the config of this analysis of the store's first n checkpoints
        return {**config, "metrics": list(parse_metrics(metrics, ds.isel({S.CHECKPOINT: slice(0, n)}))),
                "shape": [n, *config["shape"][1:]]}

    done = prepare_output(out, template, config, overwrite, config_at) if out else set()
    if out:  # what complete results hold, for readers (tgo report) to name what is missing
        record_expected(out, ctx.n_checkpoints, ctx.n_layers, bool(unit_stats),
                        work_items(stats, ctx, range(ctx.n_checkpoints)))
    units = [(ci, li) for ci in chosen for li in layers if (ci, li) not in done] if unit_stats else []
    items_done = done_items(out) if out else set()
    items = [it for it in work_items(stats, ctx, chosen, ready_checkpoints) if it.key not in items_done]
    computed: dict[tuple[int, int], dict] = {}
    passes: list[int] = []
    cluster_attrs: dict[str, Any] = {}
    started = time.perf_counter()
    with scheduler_context(scheduler, workers, memory_limit) as where, \
            UnitProgress(len(units) + len(items), len(done), enabled=progress) as bar:
        def keep(ci: int, li: int, arrays: dict, k: int) -> None:
            passes.append(k)
            if out:
                write_unit(out, ci, li, arrays, template)
                mark_done(out, ci, li)
            else:
                computed.setdefault((ci, li), {}).update(arrays)
            bar.advance()

        def keep_item(item: Any, arrays: dict, k: int) -> None:
            passes.append(k)
            for (ci, li), cell in item.cells(arrays):
                if out:
                    write_unit(out, ci, li, cell, template)
                else:
                    computed.setdefault((ci, li), {}).update(cell)
            if out:
                mark_item_done(out, item.key)
            bar.advance()

        def said(ci: int, li: int) -> Any:
            def on_pass(i: int, k: int) -> None:
                if k > 1:
                    bar.message(f"(checkpoint {ci}, layer {li}): pass {i + 1} of {k} over token groups "
                                "(the accumulators exceed the memory budget in one pass)")
            return on_pass

        if where == "threaded":
            for ci, li, arrays, k in unit_tasks(ds, act, unit_stats, ctx, units, ctx.memory_budget, said):
                keep(ci, li, arrays, k)
            for item in items:
                source = item_source(ds, act, item)
                keep_item(item, *item_task(source, item.stats, item_context(ctx, item, source), ctx.memory_budget))
        else:
            from tgo_analysis.engine.cluster import items_on_cluster, on_cluster

            if units:
                cluster_attrs = on_cluster(ds, act, unit_stats, ctx, units, given_budget, keep)
            items_on_cluster(ds, act, ctx, items, given_budget, keep_item)
    elapsed = time.perf_counter() - started
    read_bytes = (len(units) + sum(len(it.slabs) for it in items)) * act.dtype.itemsize * ctx.n_samples \
        * ctx.n_tokens * ctx.n_features
    token_passes = max(passes, default=1)
    attrs = {**provenance(where), **metric_attrs(ctx.fit_range), "tgo_config": config, "device": ctx.device,
             "token_passes": token_passes,
             "read_amplification": f"each unit's blocks were read {token_passes} x (one pass per token group "
                                   "whose accumulators fit the memory budget)",
             "rank_padding": "eigenvalue arrays share the `rank` dim; ranks beyond a spectrum's length are NaN",
             "analysis_summary": {"units_computed": len(units), "units_reused": len(done), "scheduler": where,
                                  "multi_slab_units_computed": len(items), "multi_slab_units_reused": len(items_done),
                                  "bytes_read": read_bytes, "token_passes": token_passes,
                                  "seconds": round(elapsed, 3)},
             "input_attrs": json.dumps({k: v for k, v in ds.attrs.items()}, default=str)}
    if cluster_attrs:
        attrs["cluster_plan"] = cluster_attrs
        attrs["read_amplification"] = (f"each unit's bytes were read {cluster_attrs.get('read_amplification', 1)} x "
                                       "(token-range tasks read their inner chunks; sample-range tasks every token)")
    for stat in stats:
        attrs.update(stat.attrs(ctx))
    result = finish(out, template, computed, attrs)
    settings = {**option_values, "seed": int(seed)}
    for extra in derived():
        if ctx.wants(extra.name) and extra.requires in result:
            result = add_variable(result, out, extra.name, extra.compute(result, settings))
    return result


def summary_line(result: xr.Dataset) -> str:
    """What an analysis did, in one line (``tgo analyze`` prints it); its counts are the progress bar's:
    (checkpoint, layer) units plus multi-slab items (a CKA pair, an update between checkpoints)."""
    s = result.attrs.get("analysis_summary") or {}
    seconds, read = float(s.get("seconds", 0.0)), float(s.get("bytes_read", 0))
    units, items = int(s.get("units_computed", 0)), int(s.get("multi_slab_units_computed", 0))
    reused = int(s.get("units_reused", 0)) + int(s.get("multi_slab_units_reused", 0))
    parts = f" ({units} (checkpoint, layer), {items} multi-slab)" if items else " (checkpoint, layer)"
    return (f"analyzed {units + items} units{parts}, {reused} reused, on {s.get('scheduler', '?')}: "
            f"{read / 1e6:.1f} MB read x {s.get('token_passes', 1)} in {seconds:.1f} s ({rate(read, seconds)})")


def rate(nbytes: float, seconds: float) -> str:
    """Bytes per second in the unit that shows digits: '4.0 MB/s', '1.25 GB/s' (never '0.00 GB/s')."""
    per_second = nbytes / max(seconds, 1e-9)
    return f"{per_second / 1e9:.2f} GB/s" if per_second >= 1e9 else f"{per_second / 1e6:.1f} MB/s"
