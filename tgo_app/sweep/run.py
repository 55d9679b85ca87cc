"""Running a sweep on a dask.distributed cluster: one task per missing (checkpoint, sample block).

The client creates or extends the store's metadata once (``tgo_store.prepare_store``), then
submits one task per missing block. Each task writes whole shards of its own region and commits
them, so workers never share a shard and need no locks; a task that dies is retried a bounded
number of times, and a re-run skips committed blocks. Workers build the model once per checkpoint
and reuse it for their next blocks (a per-process cache). As soon as every block of a checkpoint
is committed, its (checkpoint, layer) units are analysed on the same cluster, each split across
the workers by ``tgo_analysis.engine.cluster`` within ``analysis.memory_budget`` per worker;
statistics over two checkpoints (CKA to the reference, updates k -> k+1) run as soon as both are
committed, so ``cka_checkpoints`` grows along ``checkpoint`` as the sweep goes (from the start when
the reference, ``analysis.cka_reference``, is an early checkpoint; at the end for the default, the last).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tgo_app.sweep.config import SweepConfig
from tgo_app.sweep.status import SweepTable, write_status
from tgo_store.errors import TgoError

_WORKER_MODELS: dict = {}


def ingest_task(plan: Any, position: int, block: int) -> dict:
    """One (checkpoint, sample block) on a worker; the model is cached per worker process."""
    from tgo_store.ingestion import ingest_block

    stats = ingest_block(plan, position, block, device="auto", model_cache=_WORKER_MODELS)
    return {"position": position, "block": block, "samples": stats.samples, "seconds": stats.seconds}


@dataclass
class SweepSummary:
    blocks_written: int
    blocks_skipped: int
    seconds: float
    per_checkpoint: dict[int, dict] = field(default_factory=dict)


def prepare_sweep_store(cfg: SweepConfig) -> Any:
    from tgo_store.ingestion import prepare_store

    return prepare_store(cfg.store, cfg.ingest)


def check_reference(cfg: SweepConfig, plan: Any) -> None:
    """Refuse, before anything is ingested, a CKA reference that is not a checkpoint of the sweep."""
    reference = (cfg.analysis or {}).get("cka_reference")
    steps = [c.step for c in plan.checkpoints]
    if reference is not None and reference != -1 and reference not in steps:  # -1: the last, as everywhere
        raise TgoError(f"sweep file analysis.cka_reference {reference} is not a checkpoint of this sweep (steps "
                       f"{', '.join(str(s) for s in steps[:8])}{', ...' if len(steps) > 8 else ''}); give one of them")


def _analyze_checkpoints(cfg: SweepConfig, plan: Any, positions: list[int], address: str,
                         pending: list[int] | None = None) -> None:
    """Analyse the checkpoints at ``positions``; those at ``pending`` are not ingested yet (never read)."""
    from tgo_analysis.analyze import analyze
    from tgo_store.store.open import open_store

    options = {k: v for k, v in cfg.analysis.items() if k not in ("out", "metrics", "memory_budget")}
    if "fit_range" in options:
        options["fit_range"] = tuple(options["fit_range"])
    ds = open_store(cfg.store)
    waiting = {plan.checkpoint_indices[p] for p in pending or ()}
    ready = [i for i in range(ds.sizes["checkpoint"]) if i not in waiting]
    # on the cluster, analyze plans every unit across the workers (engine.cluster) within this per-worker budget
    analyze(ds, cfg.analysis.get("metrics", "all"), out=cfg.analysis["out"], scheduler=address,
            memory_budget=cfg.analysis.get("memory_budget"), checkpoints=[plan.checkpoint_indices[p] for p in positions],
            progress=False, ready_checkpoints=ready, **options)


def missing_resources(client: Any, cfg: SweepConfig) -> dict | None:
    """The capture resources no connected worker offers (tasks then wait for such a worker)."""
    if not cfg.capture_resources:
        return None
    workers = client.scheduler_info()["workers"].values()
    if any(all(w.get("resources", {}).get(k, 0) >= v for k, v in cfg.capture_resources.items()) for w in workers):
        return None
    print(f"tgo sweep: warning: no worker offers {cfg.capture_resources}; capture tasks wait until one joins "
          "(start workers with --resources, see README)", flush=True)
    return dict(cfg.capture_resources)


def run_sweep(cfg: SweepConfig, client: Any, *, task: Callable = ingest_task, progress: bool = True) -> SweepSummary:
    """Ingest every missing block on the cluster, then analyze each checkpoint as it completes."""
    from distributed import as_completed

    from tgo_store.store.plan import missing_blocks

    started = time.perf_counter()
    plan = prepare_sweep_store(cfg)
    check_reference(cfg, plan)
    todo = missing_blocks(plan)
    write_status(cfg.store, {"running": True, "waiting_for": missing_resources(client, cfg), "failures": []})
    remaining = {p: 0 for p in range(len(plan.checkpoints))}
    for position, _ in todo:
        remaining[position] += 1
    plan_future = client.scatter(plan, broadcast=True)
    run_id = uuid.uuid4().hex[:8]
    futures = [client.submit(task, plan_future, position, block, pure=False, retries=cfg.retries,
                             resources=cfg.capture_resources or None,
                             key=f"ingest-step{plan.checkpoints[position].step}-block{block}-{run_id}")
               for position, block in todo]
    table = SweepTable(plan, remaining, enabled=progress)
    done_positions = [p for p, n in remaining.items() if n == 0]
    if cfg.analysis and done_positions:
        _analyze_checkpoints(cfg, plan, done_positions, client.scheduler.address,
                             [p for p, n in remaining.items() if n > 0])
    failures = []
    for future in as_completed(futures):
        try:
            result = future.result()
        except Exception as exc:  # recorded and reported; a re-run retries the block
            failures.append(f"{future.key}: {type(exc).__name__}: {exc}")
            continue
        position = result["position"]
        remaining[position] -= 1
        table.block_done(result)
        if remaining[position] == 0 and cfg.analysis:
            _analyze_checkpoints(cfg, plan, [position], client.scheduler.address,
                                 [p for p, n in remaining.items() if n > 0])
    table.close()
    write_status(cfg.store, {"running": False, "waiting_for": None, "failures": failures})
    if failures:
        raise TgoError(f"{len(failures)} blocks failed after {cfg.retries} retries (first: {failures[0][:200]}); "
                       "re-run the same `tgo sweep` to retry them, `--status` lists them")
    return SweepSummary(len(todo), len(plan.checkpoints) * plan.n_blocks - len(todo), time.perf_counter() - started,
                        table.per_checkpoint)


def stop_requested(stop_file: str | None) -> bool:
    """Whether the stop file exists, at any fsspec URL (a local path, s3://..., memory://...)."""
    if not stop_file:
        return False
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(stop_file)
        return bool(fs.exists(path))
    except (ValueError, ImportError) as exc:
        raise TgoError(f"cannot check the stop file {stop_file} ({exc}); use a path or an fsspec URL") from exc


def run_sweeps(cfg: SweepConfig, client: Any, *, watch: bool = False, poll: float = 30.0, progress: bool = True,
               report: Callable[[SweepSummary], None] = lambda _: None, sleep: Callable[[float], None] = time.sleep,
               task: Callable = ingest_task) -> list[SweepSummary]:
    """One sweep, or with ``watch`` one every ``poll`` seconds until ``cfg.stop_file`` appears.

    The stop file is checked through fsspec after each sweep (so ``s3://`` and ``memory://``
    stop files work); ``report`` sees each sweep's summary as it ends.
    """
    summaries = []
    while True:
        summary = run_sweep(cfg, client, task=task, progress=progress)
        summaries.append(summary)
        report(summary)
        if not watch or stop_requested(cfg.stop_file):
            return summaries
        sleep(poll)


def sweep_on_cluster(cfg: SweepConfig, *, scheduler: str | None = None, workers: int = 2,
                     threads_per_worker: int = 1, memory_limit: str = "auto", **options: Any) -> list[SweepSummary]:
    """``run_sweeps`` on an existing scheduler, or on a LocalCluster started (and closed) here."""
    from distributed import get_client

    from tgo_analysis.engine.scheduler import scheduler_context

    with scheduler_context(scheduler, None if scheduler else workers, None if scheduler else memory_limit,
                           threads_per_worker=threads_per_worker):
        return run_sweeps(cfg, get_client(), **options)


