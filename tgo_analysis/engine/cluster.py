"""An analysis on a Dask cluster: every unit cut across the workers, its graph submitted, written unit by unit.

``engine.budget.plan_split`` chooses how one (checkpoint, layer) is cut, from the worker memory
budget, the store's chunking, the cluster size and the number of units:

- per-token statistics (``token_split`` without ``joins_tokens``) by **token range**: each task
  reads its tokens of every sample (the store's inner chunks split the token axis, so the reads
  are disjoint; ranges lie on chunk edges when the chunks suffice), folds, aggregates and returns
  result arrays; no partial is shipped;
- statistics that need every token, and per-token ones in a store with one token chunk (where
  every token range would read all of it), by **sample range**: each task folds its sample blocks into
  partials, merged (the statistics' own ``combine``) in a tree ``split_every`` wide, and
  aggregated once.

``engine.graph.cut_graph`` makes each unit's cut one dask graph. Every task claims what it holds
as worker resources (``tgo-memory`` bytes, ``tgo-threads``) through the graph's annotations,
offered to each worker here, so the scheduler never runs more on a worker than its budget.
``prepare_unit`` hooks (the tangent statistic's semi-NMF fits) are tasks too. Every unit's graph
is submitted at once; the client writes each unit and marks it done as its result arrives
(``as_completed``), so a killed client resumes from the finished units. A task is a pure function
of its inputs and merges copy before combining, so a retried task (its worker killed) can neither
lose nor double a partial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tgo_analysis.engine.blocks import LazySlab
from tgo_analysis.engine.budget import DEFAULT_FRACTION, Workers, default_budget, plan_split
from tgo_analysis.engine.graph import cut_graph
from tgo_analysis.engine.units import WorkItem, item_context, item_graph, item_source
from tgo_analysis.statistics.base import Context, StatisticBase
from tgo_store.errors import TgoError

MEMORY, THREADS = "tgo-memory", "tgo-threads"  # worker resources every analysis task declares
RETRIES = 2  # a task that raises is retried this often; one whose worker dies is rescheduled by Dask


def cluster_workers(client: Any, memory_budget: int | None) -> Workers:
    """The cluster's size; the budget is ``memory_budget`` bytes per worker, or a fraction of its memory limit."""
    info = list(client.scheduler_info(n_workers=-1)["workers"].values())
    if not info:
        raise TgoError("the Dask cluster has no workers; start some (`dask worker <scheduler address>`) and re-run")
    threads = min(int(w["nthreads"]) for w in info)
    if memory_budget is not None:
        budget = int(memory_budget)
    else:
        limits = [int(w.get("memory_limit") or 0) for w in info]
        budget = int(DEFAULT_FRACTION * min(limits)) if all(limits) else default_budget() // len(info)
    return Workers(len(info), max(1, threads), budget)


def offer_resources(client: Any, memory_budget: Any) -> None:
    """Give every worker the ``tgo-memory`` (its budget) and ``tgo-threads`` resources tasks claim."""
    from tgo_analysis.engine.budget import DEFAULT_FRACTION as fraction

    async def offer(dask_worker: Any, given: Any) -> None:
        limit = dask_worker.memory_manager.memory_limit
        budget = int(given) if given is not None else int(fraction * limit) if limit else default_budget()
        await dask_worker.set_resources(**{MEMORY: budget, THREADS: dask_worker.state.nthreads})

    client.run(offer, given=memory_budget)


def token_view(ds: Any, act: Any) -> tuple[Any, int]:
    """The activations as a dask array chunked by the store's inner chunks along ``token``, and the
    tokens per chunk; (None, all tokens) when the store cannot be reopened so or has one token chunk.

    Slicing tokens out of a shard-sized dask chunk still reads the whole shard (dask does not push
    the slice into the zarr read), so token-range tasks read from this view, whose chunks a token
    range selects whole: the reads of the tasks are disjoint.
    """
    import xarray as xr

    from tgo_store.store import schema as S

    n_tokens = int(act.sizes[S.TOKEN])
    inner, source = act.encoding.get("chunks"), ds.encoding.get("source")
    if not inner or not source or int(inner[3]) >= n_tokens:
        return None, n_tokens
    chunks = {S.CHECKPOINT: 1, S.LAYER: 1, S.SAMPLE: act.data.chunks[2], S.TOKEN: int(inner[3]), S.FEATURE: -1}
    try:
        view = xr.open_zarr(source, zarr_format=3, chunks=chunks)[S.ACTIVATIONS]
    except (OSError, ValueError, KeyError, TypeError):  # not a store we can reopen here: read the shards
        return None, n_tokens
    if view.shape != act.shape:
        return None, n_tokens
    return view.data, int(inner[3])


def items_on_cluster(ds: Any, act: Any, ctx: Context, items: Sequence[WorkItem], memory_budget: Any,
                     keep: Callable[[WorkItem, dict, int], None]) -> None:
    """Every multi-slab item's graph on the current Dask client, planned within a worker's budget,
    handed to ``keep`` as each finishes."""
    from distributed import as_completed, get_client

    if not items:
        return
    client = get_client()
    workers = cluster_workers(client, memory_budget)
    running: dict[str, tuple[WorkItem, int]] = {}
    futures = []
    for item in items:
        source = item_source(ds, act, item)
        graph, n_passes = item_graph(source, item.stats, item_context(ctx, item, source), workers.budget,
                                     workers.threads)
        futures.append(client.compute(graph, retries=RETRIES))
        running[futures[-1].key] = (item, n_passes)
    for future in as_completed(futures):
        item, n_passes = running.pop(future.key)
        keep(item, future.result(), n_passes)
        future.release()


def on_cluster(ds: Any, act: Any, stats: list[StatisticBase], ctx: Context, units: list[tuple[int, int]],
               memory_budget: Any, keep: Callable[[int, int, dict, int], None]) -> dict[str, Any]:
    """Every unit on the current Dask client, written by ``keep`` as each finishes; the plan, for attrs."""
    from distributed import as_completed, get_client
    from distributed.scheduler import KilledWorker

    from tgo_analysis.engine.units import unit_source

    client = get_client()
    workers = cluster_workers(client, memory_budget)
    if not units:
        return {"workers": workers.count, "threads_per_worker": workers.threads, "budget_per_worker": workers.budget}
    offer_resources(client, memory_budget)
    view, chunk = token_view(ds, act)
    futures, units_of, splits = {}, {}, {}
    for ci, li in units:
        source = unit_source(ds, act, ci, li, stats)
        bounds = np.concatenate([[0], np.cumsum(source.activations.array.chunks[0])]).astype(int)
        cut = plan_split(stats, ctx, workers, len(units), bounds, chunk)
        tokens_source = source if view is None else dataclasses.replace(source, activations=LazySlab(view[ci, li]))
        graph = cut_graph(source, tokens_source, stats, ctx, cut, MEMORY, THREADS, (ci, li), RETRIES)
        future = client.compute(graph)
        futures[(ci, li)], units_of[future.key] = future, (ci, li)
        splits[(ci, li)] = cut
    for future in as_completed(list(futures.values())):
        ci, li = units_of.pop(future.key)
        try:
            arrays = future.result()
        except KilledWorker as exc:
            raise TgoError(f"unit (checkpoint {ci}, layer {li}) killed its workers repeatedly "
                           f"({exc}); a worker ran out of memory: lower --memory-budget or raise the workers' "
                           "--memory-limit") from None
        keep(ci, li, arrays, 1)
        future.release()
    first = next(iter(splits.values()))
    return {"workers": workers.count, "threads_per_worker": workers.threads, "budget_per_worker": workers.budget,
            "token_chunk": chunk, "unit_split": first.record(),
            "read_amplification": max(s.read_amplification for s in splits.values())}
