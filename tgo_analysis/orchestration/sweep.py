"""Cluster-scale sweeps: ingest and analyze many checkpoints on dask.distributed.

The client reads ``sweep.toml``, creates or extends the store's metadata once
(``tgo_store.prepare_store``), then submits one task per missing (checkpoint, sample block).
Each task writes whole shards of its own region and commits them, so workers never share a
shard and need no locks; a task that dies is retried a bounded number of times, and a re-run
skips committed blocks. Workers build the model once per checkpoint and reuse it for their
next blocks (a per-process cache), reading the weights from the checkpoint URL themselves.
As soon as every block of a checkpoint is committed, its (checkpoint, layer) units are analysed
on the same cluster and written into the results store.

    [model]
    spec = "vit_small_patch8_224"            # timm name or package.module:factory
    kwargs = { img_size = 224 }
    [checkpoints]
    paths = "runs/exp1/ckpt_*.pth"           # a glob or a list of fsspec URLs
    [data]
    spec = "path/to/images/"
    [store]
    url = "s3://bucket/exp1.zarr"
    batch_size = 64                          # optional: samples_per_block, dtype, layers, tokens
    [analysis]                               # optional: no table, no analysis
    out = "s3://bucket/exp1-metrics.zarr"
    metrics = "all"
    fit_range = [11, 100]
    [resources]                              # optional: dask worker resources of capture tasks
    capture = { GPU = 1 }
    [run]
    retries = 2
"""

from __future__ import annotations

import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgo_store.errors import TgoError
from tgo_store.records import RECORD_ROOT, RecordStore

REQUIRED = {"model": ("spec",), "checkpoints": ("paths",), "data": ("spec",), "store": ("url",)}
_WORKER_MODELS: dict = {}


@dataclass(frozen=True)
class SweepConfig:
    model_spec: str
    model_kwargs: dict
    checkpoints: str | list[str]
    data_spec: str
    store: str
    data_options: dict = field(default_factory=dict)  # [data] seq_len, padding, samples, seed (text sources)
    batch_size: int = 64
    samples_per_block: int | None = None
    dtype: str = "float16"
    precision: str = "float32"
    gradients: bool = False  # also record ∂L/∂h (SPEC section 5), as `tgo ingest --gradients`
    loss: str | None = None
    layers: list[int] | None = None
    tokens: list[int] | None = None
    analysis: dict | None = None
    capture_resources: dict = field(default_factory=dict)
    retries: int = 2
    stop_file: str | None = None


def _need(table: dict, section: str, key: str, kind: type | tuple) -> Any:
    if section not in table or not isinstance(table[section], dict):
        raise TgoError(f"sweep file has no [{section}] table; add it (see `tgo sweep --help`)")
    if key not in table[section]:
        raise TgoError(f"sweep file lacks {section}.{key}; add it (see `tgo sweep --help`)")
    value = table[section][key]
    if not isinstance(value, kind):
        raise TgoError(f"sweep file {section}.{key} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


OPTIONAL: dict[tuple[str, str], tuple[type | tuple, str]] = {  # (table, key) -> (types, what it must be)
    ("model", "kwargs"): (dict, "a table of model options"),
    ("store", "batch_size"): (int, "a positive integer"),
    ("store", "samples_per_block"): (int, "a positive integer"),
    ("store", "dtype"): (str, "float16 or float32"),
    ("store", "precision"): (str, "float32, float16 or bfloat16"),
    ("store", "gradients"): (bool, "true or false"),
    ("store", "loss"): (str, "classification, causal_lm or masked_lm"),
    ("store", "layers"): (list, "a list of layer indices"),
    ("store", "tokens"): (list, "a list of token indices"),
    ("analysis", "metrics"): (str, "all, or a comma-separated list of metric names"),
    ("analysis", "fit_range"): (list, "two ranks [first, last]"),
    ("run", "retries"): (int, "a non-negative integer"),
    ("run", "stop_file"): (str, "a path or URL"),
}


def _optional(table: dict, section: str, key: str, default: Any = None) -> Any:
    """An optional value, checked against OPTIONAL (bool is not an int here)."""
    part = table.get(section)
    if part is None or key not in part:
        return default
    value = part[key]
    kinds, what = OPTIONAL[(section, key)]
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and kinds is int)
    if ok and isinstance(value, list):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if ok and kinds is int:
        ok = value >= (0 if key == "retries" else 1)
    if ok and key == "fit_range":
        ok = len(value) == 2 and 1 <= value[0] < value[1]
    if not ok:
        raise TgoError(f"sweep file {section}.{key} must be {what}, got {value!r}; fix the sweep file")
    return value


def load_config(path: str | Path) -> SweepConfig:
    """Parse and check the whole sweep file before anything is written."""
    try:
        table = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise TgoError(f"sweep file {path} does not exist; pass the path of a sweep.toml") from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise TgoError(f"sweep file {path} is not a text file ({type(exc).__name__}); pass the path of a sweep.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TgoError(f"sweep file {path} is not valid TOML ({exc}); fix the syntax") from exc
    for section in ("model", "store", "analysis", "run", "resources"):
        if section in table and not isinstance(table[section], dict):
            raise TgoError(f"sweep file [{section}] must be a table, got {table[section]!r}; fix the sweep file")
    paths = _need(table, "checkpoints", "paths", (str, list))
    if isinstance(paths, list) and not all(isinstance(p, str) for p in paths):
        raise TgoError(f"sweep file checkpoints.paths must be a glob or a list of paths, got {paths!r}")
    store_url = _need(table, "store", "url", str)
    analysis = table.get("analysis")
    if analysis is not None and ("out" not in analysis or not isinstance(analysis["out"], str)):
        raise TgoError("sweep file lacks analysis.out (the results store URL); add it or drop [analysis]")
    if analysis is not None:
        from tgo_store.writer import refuse_same_store

        refuse_same_store(store_url, analysis["out"], "sweep file analysis.out")
        _optional(table, "analysis", "metrics")
        _optional(table, "analysis", "fit_range")
    resources = table.get("resources", {}).get("capture", {})
    if not isinstance(resources, dict) or not all(isinstance(v, int | float) for v in resources.values()):
        raise TgoError("sweep file resources.capture must map resource names to numbers, e.g. { GPU = 1 }")
    return SweepConfig(
        model_spec=_need(table, "model", "spec", str), model_kwargs=dict(_optional(table, "model", "kwargs", {})),
        checkpoints=paths, data_spec=_need(table, "data", "spec", str), store=store_url,
        data_options={k: v for k, v in table["data"].items() if k in ("seq_len", "padding", "samples", "seed")},
        batch_size=_optional(table, "store", "batch_size", 64),
        samples_per_block=_optional(table, "store", "samples_per_block"),
        dtype=_optional(table, "store", "dtype", "float16"), precision=_optional(table, "store", "precision", "float32"),
        gradients=_optional(table, "store", "gradients", False), loss=_optional(table, "store", "loss"),
        layers=_optional(table, "store", "layers"), tokens=_optional(table, "store", "tokens"),
        analysis=dict(analysis) if analysis else None, capture_resources=dict(resources),
        retries=_optional(table, "run", "retries", 2), stop_file=_optional(table, "run", "stop_file"))


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


def _prepare(cfg: SweepConfig) -> Any:
    from tgo_store.ingestion import prepare_store

    return prepare_store(cfg.store, model_spec=cfg.model_spec, checkpoints=cfg.checkpoints, data_spec=cfg.data_spec,
                         layers=cfg.layers, tokens=cfg.tokens, dtype=cfg.dtype, batch_size=cfg.batch_size,
                         samples_per_block=cfg.samples_per_block, model_kwargs=cfg.model_kwargs,
                         precision=cfg.precision, gradients=cfg.gradients, loss=cfg.loss,
                         data_options=cfg.data_options)


def _analyze_checkpoints(cfg: SweepConfig, plan: Any, positions: list[int], address: str) -> None:
    from tgo_analysis.analyze import analyze
    from tgo_store.open import open_store

    options = {k: v for k, v in cfg.analysis.items() if k not in ("out", "metrics")}
    if "fit_range" in options:
        options["fit_range"] = tuple(options["fit_range"])
    analyze(open_store(cfg.store), cfg.analysis.get("metrics", "all"), out=cfg.analysis["out"], scheduler=address,
            checkpoints=[plan.checkpoint_indices[p] for p in positions], progress=False, **options)


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

    from tgo_store.ingestion import missing_blocks

    started = time.perf_counter()
    plan = _prepare(cfg)
    todo = missing_blocks(plan)
    _write_status(cfg.store, {"running": True, "waiting_for": missing_resources(client, cfg), "failures": []})
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
        _analyze_checkpoints(cfg, plan, done_positions, client.scheduler.address)
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
            _analyze_checkpoints(cfg, plan, [position], client.scheduler.address)
    table.close()
    _write_status(cfg.store, {"running": False, "waiting_for": None, "failures": failures})
    if failures:
        raise TgoError(f"{len(failures)} blocks failed after {cfg.retries} retries (first: {failures[0][:200]}); "
                       "re-run the same `tgo sweep` to retry them, `--status` lists them")
    return SweepSummary(len(todo), len(plan.checkpoints) * plan.n_blocks - len(todo), time.perf_counter() - started,
                        table.per_checkpoint)


STATUS_KEY = f"{RECORD_ROOT}/sweep/status.json"


def _write_status(store: str, status: dict) -> None:
    """What the client last knew: running, waiting for a resource, failed blocks."""
    RecordStore(store).put(STATUS_KEY, {**status, "at": time.time()})


def _read_status(store: str) -> dict:
    return RecordStore(store).get(STATUS_KEY, {})


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

    from tgo_analysis.scheduler import scheduler_context

    with scheduler_context(scheduler, None if scheduler else workers, None if scheduler else memory_limit,
                           threads_per_worker=threads_per_worker):
        return run_sweeps(cfg, get_client(), **options)


def sweep_status(cfg: SweepConfig) -> tuple[list[tuple[str, ...]], list[str]]:
    """Per checkpoint: step, blocks committed / total, state, path; and notes on the last run."""
    from tgo_store.info import store_info

    info = store_info(cfg.store)
    status = _read_status(cfg.store)
    unfinished = "running" if status.get("running") else "incomplete"
    if status.get("waiting_for"):
        unfinished = f"waiting for a worker with {status['waiting_for']}"
    rows = [(str(c["step"]), f"{c['blocks_done']}/{info.blocks_per_checkpoint}",
             "done" if c["blocks_done"] == info.blocks_per_checkpoint else unfinished, c["path"])
            for c in info.checkpoints]
    notes = [f"failed: {f}" for f in status.get("failures", [])]
    return rows, notes


class SweepTable:
    """Per-checkpoint progress: blocks done / total and img/s (rich live table)."""

    def __init__(self, plan: Any, remaining: dict[int, int], enabled: bool):
        self.plan = plan
        self.total = dict(remaining)
        self.per_checkpoint: dict[int, dict] = {p: {"blocks": 0, "samples": 0, "seconds": 0.0} for p in remaining}
        self.started = time.perf_counter()
        self._live: Any = None
        if enabled and any(remaining.values()):
            from rich.live import Live

            from tgo_store.progress import stderr_console

            self._live = Live(self._render(), refresh_per_second=4, console=stderr_console())
            self._live.__enter__()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table("step", "blocks", "img/s", title="tgo sweep")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        for p, stats in self.per_checkpoint.items():
            table.add_row(str(self.plan.checkpoints[p].step), f"{stats['blocks']}/{self.total[p]}",
                          f"{stats['samples'] / elapsed:.1f}")
        return table

    def block_done(self, result: dict) -> None:
        stats = self.per_checkpoint[result["position"]]
        stats["blocks"] += 1
        stats["samples"] += result["samples"]
        stats["seconds"] += result["seconds"]
        if self._live is not None:
            self._live.update(self._render())

    def close(self) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
