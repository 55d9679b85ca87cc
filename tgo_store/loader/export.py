"""One layer of a store as a flat-row Arrow dataset that ``datasets.load_from_disk`` opens.

One row per valid position: ``activations`` (a fixed-size list of D float32), ``sample``,
``token``, ``checkpoint`` (the training step), and ``token_id`` / ``label`` where the store has
them. The positions are the ones an unshuffled ``ActivationLoader`` epoch yields (the same
``LayerSource``: the same selection and the same one-line refusals), in store order: checkpoint,
then sample block, then sample-major within a block.

Memory: one piece (a store shard, in the store dtype) and one record batch of float32 at a time,
whatever the layer's size. The layout is what ``Dataset.save_to_disk`` writes (Arrow stream
shards ``data-KKKKK-of-NNNNN.arrow``, ``state.json``, ``dataset_info.json``), written with
``datasets``' own ``ArrowWriter``; ``tgo_export.json`` records the provenance.

An export is built in ``DIR.tgo-partial`` and renamed to ``DIR`` only once every file is
written, so a folder named ``DIR`` is always complete. Shard k holds rows [k·R, (k+1)·R) and is
renamed into place when finished, so an interrupted export resumes at the first missing shard
(only for the same selection: the partial folder's manifest is checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.loader.mixing import Window, parse_buffer
from tgo_store.loader.plan import EpochPlan
from tgo_store.loader.source import LayerSource, Part
from tgo_store.store.validity import PositionChoice

MANIFEST = "tgo_export.json"
PARTIAL_SUFFIX = ".tgo-partial"
DEFAULT_SHARD_SIZE = "500MB"  # datasets' own default max_shard_size
BATCH_ROWS = 8192  # rows converted to float32 and written at a time


@dataclass(frozen=True)
class ExportSummary:
    path: str
    rows: int
    shards: int
    reused_shards: int
    bytes: int
    seconds: float
    already_complete: bool = False


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise TgoError("exporting as hf-datasets needs the `datasets` library; pip install 'tgo[export]' "
                       "(or pip install datasets)") from None
    return datasets


def features_of(source: LayerSource) -> Any:
    """The datasets Features of a row: activations as a fixed-size float32 list, the rest int64."""
    datasets = _datasets()
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


def _local(out: Any) -> Path:
    text = os.fspath(out)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise TgoError(f"--out {text} is not a local folder; export writes a local folder (it is built beside "
                       "itself and renamed when complete), then copy it where it should go")
    return Path(text).expanduser()


def _manifest(source: LayerSource, shard_rows: int) -> dict[str, Any]:
    import tgo_store

    choice = {"store": source.url or "dataset", "layer": source.layer,
              "checkpoints": source.checkpoints.tolist(), "steps": source.steps[source.checkpoints].tolist(),
              "tokens": source.tokens.tolist(), "exclude_special": source.choice.exclude_special,
              "exclude_first": source.choice.exclude_first, "n_features": source.n_features,
              "store_dtype": str(source.dtype), "rows": int(source.counts.sum()), "shard_rows": shard_rows,
              "samples": None if source.chosen_samples is None else {
                  "count": int(source.chosen_samples.sum()),
                  "sha256": hashlib.sha256(np.flatnonzero(source.chosen_samples).tobytes()).hexdigest()}}
    digest = hashlib.sha256(json.dumps(choice, sort_keys=True).encode()).hexdigest()
    return {"format": "hf-datasets", "fingerprint": digest, **choice, "created_by": f"tgo {tgo_store.__version__}"}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _shard_name(k: int, n: int) -> str:
    return f"data-{k:05d}-of-{n:05d}.arrow"


def _write_shard(source: LayerSource, plan: EpochPlan, k: int, path: Path, features: Any, bar: Any) -> int:
    """Write shard k (the rows of window k of the unshuffled plan) to ``path`` via a temporary; its file size."""
    from datasets.arrow_writer import ArrowWriter

    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    writer = ArrowWriter(features=features, path=str(tmp))
    schema = features.arrow_schema
    fields = source.fields(True)
    try:
        for part in plan.window_parts(0, k):
            win = Window.allocate(part.piece, fields, part.hi - part.lo, source.n_features, np.empty(0))
            source.read_part(Part(part.piece, part.lo, part.hi), win.arrays, 0)  # one piece at most
            for lo in range(0, part.hi - part.lo, BATCH_ROWS):
                hi = min(part.hi - part.lo, lo + BATCH_ROWS)
                writer.write_table(_table(win.arrays, lo, hi, schema))
                bar.advance(hi - lo)
            del win
        writer.finalize()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path.stat().st_size


def _finish(partial: Path, manifest: dict[str, Any], features: Any, names: list[str], nbytes: int) -> None:
    """state.json, dataset_info.json (as ``Dataset.save_to_disk`` writes them) and the manifest."""
    datasets = _datasets()
    description = (f"layer {manifest['layer']} of {manifest['store']} (steps {manifest['steps']}): one row per "
                   f"valid position, exported by {manifest['created_by']}; provenance in {MANIFEST}")
    info = asdict(datasets.DatasetInfo(description=description, features=features, dataset_size=nbytes))
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": manifest["fingerprint"][:16],
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (partial / "dataset_info.json").write_text(json.dumps({k: info[k] for k in sorted(info)}, indent=2))
    (partial / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (partial / MANIFEST).write_text(json.dumps({**manifest, "bytes": nbytes, "shards": len(names)}, indent=1))


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
                       checkpoints: Sequence[int] | None = None, steps: Sequence[int] | None = None,
                       tokens: Any = None, exclude_special: bool = False,
                       exclude_first: bool = False, samples: Any = None, shard_size: int | str = DEFAULT_SHARD_SIZE,
                       storage_options: dict | None = None, progress: bool = False) -> ExportSummary:
    """Write the chosen positions of one layer to ``out`` as a ``datasets`` Arrow folder (see module doc).

    ``steps``: the checkpoints by training step (-1: the last), as the command line names them.
    The selection is the loader's (``checkpoint`` index or ``checkpoints`` indices, ``tokens``,
    ``exclude_special`` / ``exclude_first``, ``samples``); ``shard_size`` (bytes like "500MB" or
    rows as an int) sets the rows per Arrow file. Re-running an interrupted export resumes it;
    re-running a finished one changes nothing.
    """
    from tgo_store.progress import progress_bar

    start = time.perf_counter()
    target = _local(out)
    if steps is not None:
        checkpoints = step_indices(store, steps, storage_options)
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
    manifest = _manifest(source, shard_rows)
    if target.exists():
        done = _read(target)
        if done is not None and done.get("fingerprint") == manifest["fingerprint"]:
            return ExportSummary(str(target), done["rows"], done["shards"], done["shards"], done["bytes"],
                                 time.perf_counter() - start, already_complete=True)
        raise TgoError(f"{target} already exists and is not this export; choose another --out or remove it")
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    if partial.exists():
        found = _read(partial)
        if found is None or found.get("fingerprint") != manifest["fingerprint"]:
            raise TgoError(f"{partial} holds an unfinished export of another selection; remove it to start "
                           "this one, or re-run that export to finish it")
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))  # no state.json yet: not loadable
    plan = EpochPlan(source.counts, shard_rows, 1, False, 0)
    names = [_shard_name(k, plan.n_windows) for k in range(plan.n_windows)]
    nbytes, reused = 0, 0
    with progress_bar(f"export layer {source.layer} (positions)", total, progress, unit="positions") as bar:
        for k, name in enumerate(names):
            path = partial / name
            if path.exists():  # finished by an earlier, interrupted run
                nbytes += path.stat().st_size
                reused += 1
                bar.advance(plan.window_size(k))
                continue
            nbytes += _write_shard(source, plan, k, path, features, bar)
    for stale in partial.glob("*.tmp"):  # temporaries of a run that was cut short
        stale.unlink()
    _finish(partial, manifest, features, names, nbytes)
    os.replace(partial, target)
    return ExportSummary(str(target), total, len(names), reused, nbytes, time.perf_counter() - start)


EXPORTERS: dict[str, Callable[..., ExportSummary]] = {"hf-datasets": export_hf_datasets}


def export(fmt: str, store: Any, layer: int, out: Any, **kwargs: Any) -> ExportSummary:
    """Export with the exporter registered as ``fmt`` (``EXPORTERS``)."""
    if fmt not in EXPORTERS:
        raise TgoError(f"unknown export format '{fmt}'; choose one of {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[fmt](store, layer, out, **kwargs)

