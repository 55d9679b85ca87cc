"""The sweep file: ``sweep.toml`` parsed and every value type-checked before anything is written.

A sweep ingests and analyses many checkpoints on dask.distributed (``run``); its file:

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
    memory_budget = "8GB"                    # optional: per worker (default: half its memory limit)
    [resources]                              # optional: dask worker resources of capture tasks
    capture = { GPU = 1 }
    [run]
    retries = 2
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tgo_store.errors import TgoError
from tgo_store.options import IngestOptions, option_fields

REQUIRED = {"model": ("spec",), "checkpoints": ("paths",), "data": ("spec",), "store": ("url",)}


@dataclass(frozen=True)
class SweepConfig:
    ingest: IngestOptions  # [model], [checkpoints], [data] and [store] values (their declarations)
    store: str
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


INGEST_KEYS = {item.name: item.metadata["sweep"] for item in option_fields() if item.metadata["sweep"]}
OPTIONAL: dict[tuple[str, str], tuple[type | tuple, str]] = {  # (table, key) -> (types, what it must be)
    **{(k.table, k.key): (k.kinds, k.what) for k in INGEST_KEYS.values() if not k.required},
    ("analysis", "metrics"): (str, "all, or a comma-separated list of metric names"),
    ("analysis", "fit_range"): (list, "two ranks [first, last]"),
    ("analysis", "memory_budget"): (str, "a size per worker such as \"8GB\""),
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
        from tgo_store.store.location import refuse_same_store

        refuse_same_store(store_url, analysis["out"], "sweep file analysis.out")
        _optional(table, "analysis", "metrics")
        _optional(table, "analysis", "fit_range")
        budget = _optional(table, "analysis", "memory_budget")
        if budget is not None:
            from tgo_analysis.engine.budget import parse_budget

            parse_budget(budget)  # a bad size is refused before anything runs
    resources = table.get("resources", {}).get("capture", {})
    if not isinstance(resources, dict) or not all(isinstance(v, int | float) for v in resources.values()):
        raise TgoError("sweep file resources.capture must map resource names to numbers, e.g. { GPU = 1 }")
    model_spec, data_spec = _need(table, "model", "spec", str), _need(table, "data", "spec", str)
    values = {name: _optional(table, key.table, key.key) for name, key in INGEST_KEYS.items() if not key.required}
    values = {name: value for name, value in values.items() if value is not None}
    if "model_kwargs" in values:
        values["model_kwargs"] = dict(values["model_kwargs"])
    options = IngestOptions(
        model_spec=model_spec, checkpoints=paths, data_spec=data_spec,
        data_options={k: v for k, v in table["data"].items() if k in ("seq_len", "padding", "samples", "seed")},
        **values)
    return SweepConfig(
        ingest=options, store=store_url, analysis=dict(analysis) if analysis else None,
        capture_resources=dict(resources), retries=_optional(table, "run", "retries", 2),
        stop_file=_optional(table, "run", "stop_file"))
