"""`tgo export`: one layer of a store as an Arrow dataset, by a format of the registry ``EXPORTERS``.

``hf-datasets`` (here): one row per valid position: ``activations`` (a fixed-size list of D
float32), ``sample``, ``token``, ``checkpoint`` (the training step), and ``token_id`` / ``label``
where the store has them. The positions are the ones an unshuffled ``ActivationLoader`` epoch
yields (the same ``LayerSource``: the same selection and the same one-line refusals), in store
order: checkpoint, then sample block, then sample-major within a block. Shard k holds rows
[k·R, (k+1)·R). ``saelens`` (``saelens.py``): SAELens's cached-activations layout.

Memory: one piece (a store shard, in the store dtype) and one record batch of float32 at a time,
whatever the layer's size. Folder layout, building beside and renaming, and resuming at the first
missing shard: ``arrow.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.loader.arrow import (
    DEFAULT_SHARD_SIZE,
    MANIFEST,
    PARTIAL_SUFFIX,
    ExportSummary,
    build,
    datasets_module,
    manifest,
    selection_facts,
    write_shard_file,
)
from tgo_store.loader.mixing import Window, parse_buffer
from tgo_store.loader.plan import EpochPlan
from tgo_store.loader.saelens import export_saelens
from tgo_store.loader.source import LayerSource, Part
from tgo_store.no_space import naming_full_disk
from tgo_store.store.validity import PositionChoice
from tgo_store.store.writer_lock import writer_lock

__all__ = ["DEFAULT_SHARD_SIZE", "EXPORTERS", "MANIFEST", "PARTIAL_SUFFIX", "ExportSummary", "export",
           "export_hf_datasets", "export_saelens", "features_of"]

BATCH_ROWS = 8192  # rows converted to float32 and written at a time


def features_of(source: LayerSource) -> Any:
    """The datasets Features of a row: activations as a fixed-size float32 list, the rest int64."""
    datasets = datasets_module("hf-datasets")
    columns = {"activations": datasets.List(datasets.Value("float32"), length=source.n_features)}
    for key in source.fields(True):
        if key != "activations":
            columns[key] = datasets.Value("int64")
    return datasets.Features(columns)


def _table(arrays: dict[str, np.ndarray], lo: int, hi: int, schema: Any) -> Any:
    """Rows [lo, hi) of a window's arrays as an Arrow table (activations converted to float32)."""
    import pyarrow as pa

    x = np.ascontiguousarray(arrays["activations"][lo:hi], dtype=np.float32)
    columns = [pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]) if name == "activations"
               else pa.array(arrays[name][lo:hi]) for name in schema.names]
    return pa.Table.from_arrays(columns, schema=schema)


def _write_shard(source: LayerSource, plan: EpochPlan, k: int, path: Path, features: Any, bar: Any) -> int:
    """Write shard k (the rows of window k of the unshuffled plan) to ``path``; its file size."""
    schema = features.arrow_schema
    fields = source.fields(True)

    def tables() -> Iterator[Any]:
        for part in plan.window_parts(0, k):
            win = Window.allocate(part.piece, fields, part.hi - part.lo, source.n_features, np.empty(0))
            source.read_part(Part(part.piece, part.lo, part.hi), win.arrays, 0)  # one piece at most
            for lo in range(0, part.hi - part.lo, BATCH_ROWS):
                hi = min(part.hi - part.lo, lo + BATCH_ROWS)
                yield _table(win.arrays, lo, hi, schema)
                bar.advance(hi - lo)
            del win

    return write_shard_file(path, features, tables())


def step_indices(store: Any, steps: Sequence[int], storage_options: dict | None = None) -> list[int]:
    """Checkpoint indices of training steps (-1: the last), as ``tgo export --checkpoints`` names them;
    a step the store lacks is refused with the nearest one."""
    import xarray as xr

    from tgo_store.errors import nearest_step
    from tgo_store.store import schema as S
    from tgo_store.store.open import open_store

    ds = store if isinstance(store, xr.Dataset) else open_store(os.fspath(store), storage_options=storage_options,
                                                                chunks=None)
    act = S.validate_activations(ds)  # a foreign or half-made store: its own one-line refusal
    known = ([int(v) for v in ds[S.CHECKPOINT].values] if S.CHECKPOINT in ds.coords
             else list(range(act.shape[0])))  # no coordinate: the steps are the indices, as the loader reads them
    indices = []
    for step in steps:
        if int(step) == -1 and known:
            indices.append(len(known) - 1)
        elif int(step) in known:
            indices.append(known.index(int(step)))
        else:
            raise TgoError(f"step {step} is not a checkpoint of the store{nearest_step(step, known)}; give training "
                           f"steps ({', '.join(map(str, known[:8]))}{', ...' if len(known) > 8 else ''}), -1 for the last")
    return indices


def export_hf_datasets(store: Any, layer: int, out: Any, *, checkpoint: int = -1,
                       checkpoints: Sequence[int] | None = None,
                       tokens: Any = None, exclude_special: bool = False,
                       exclude_first: bool = False, samples: Any = None, shard_size: int | str = DEFAULT_SHARD_SIZE,
                       storage_options: dict | None = None, progress: bool = False) -> ExportSummary:
    """Write the chosen positions of one layer to ``out`` as a ``datasets`` Arrow folder (see module doc).

    The selection is the loader's (``checkpoint`` index or ``checkpoints`` indices, ``tokens``,
    ``exclude_special`` / ``exclude_first``, ``samples``); ``shard_size`` (bytes like "500MB" or
    rows as an int) sets the rows per Arrow file. Re-running an interrupted export resumes it;
    re-running a finished one changes nothing.
    """
    source = LayerSource(store, layer, checkpoint if checkpoints is None else checkpoints, tokens,
                         PositionChoice(bool(exclude_special), bool(exclude_first)), storage_options, samples)
    total = int(source.counts.sum())
    if total == 0:
        raise TgoError(f"layer {layer} of {source.where} has no valid position with this choice; "
                       "choose other tokens or drop exclude_special / exclude_first")
    features = features_of(source)
    try:
        shard_rows = parse_buffer(shard_size, 4 * source.n_features + 8 * (len(features) - 1))
    except TgoError:
        raise TgoError(f"shard size {shard_size!r} is neither a number of rows nor a size like '500MB'; "
                       "pass e.g. 500MB") from None
    facts = manifest("hf-datasets", {**selection_facts(source), "rows": total, "shard_rows": shard_rows})
    plan = EpochPlan(source.counts, shard_rows, 1, False, 0)
    description = (f"layer {facts['layer']} of {facts['store']} (steps {facts['steps']}): one row per "
                   f"valid position, exported by {facts['created_by']}; provenance in {MANIFEST}")
    return build(out, facts, features, [plan.window_size(k) for k in range(plan.n_windows)],
                 lambda k, path, bar: _write_shard(source, plan, k, path, features, bar),
                 what=f"export layer {source.layer} (positions)", unit="positions", progress=progress,
                 description=description)


EXPORTERS: dict[str, Callable[..., ExportSummary]] = {"hf-datasets": export_hf_datasets, "saelens": export_saelens}


def export(fmt: str, store: Any, layer: int, out: Any, **kwargs: Any) -> ExportSummary:
    """Export with the exporter registered as ``fmt`` (``EXPORTERS``), as the one writer of ``out``
    (a second export into it is refused naming the first) and with a full disk named. ``steps``
    (training steps, -1 the last, as the command line names checkpoints) become ``checkpoints``
    indices here, once, for every format."""
    import inspect

    if fmt not in EXPORTERS:
        raise TgoError(f"unknown export format '{fmt}'; choose one of {', '.join(sorted(EXPORTERS))}")
    steps = kwargs.pop("steps", None)  # training steps, as every verb names checkpoints -> indices
    if steps is not None:
        kwargs["checkpoints"] = step_indices(store, steps, kwargs.get("storage_options"))
    takes = inspect.signature(EXPORTERS[fmt]).parameters
    for name in kwargs:
        if name not in takes:
            raise TgoError(f"--{name.replace('_', '-')} does not apply to --format {fmt}; drop it")
    with naming_full_disk(os.fspath(out)), writer_lock(os.fspath(out), "an export (tgo export)"):
        return EXPORTERS[fmt](store, layer, out, **kwargs)
