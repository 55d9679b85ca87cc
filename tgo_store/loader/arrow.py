"""An exported Arrow folder that ``datasets.load_from_disk`` opens, built beside and renamed, resumable.

What every exporter of ``export.EXPORTERS`` shares (they differ only in their rows): the layout is
what ``Dataset.save_to_disk`` writes (Arrow stream shards ``data-KKKKK-of-NNNNN.arrow``,
``state.json``, ``dataset_info.json``), written with ``datasets``' own ``ArrowWriter``;
``tgo_export.json`` records the provenance and a fingerprint of the selection.

A folder is built in ``DIR.tgo-partial`` and renamed to ``DIR`` only once every file is written,
so a folder named ``DIR`` is always complete. Each shard is written to a temporary and renamed
into place when finished, so an interrupted export resumes at the first missing shard (only for
the same selection: the partial folder's manifest is checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.loader.source import LayerSource

MANIFEST = "tgo_export.json"
PARTIAL_SUFFIX = ".tgo-partial"
DEFAULT_SHARD_SIZE = "500MB"  # datasets' own default max_shard_size


@dataclass(frozen=True)
class ExportSummary:
    path: str
    rows: int
    shards: int
    reused_shards: int
    bytes: int
    seconds: float
    already_complete: bool = False
    note: str = ""  # what a user of the format needs to know (the SAELens hook name, ...)


def datasets_module(fmt: str) -> Any:
    """The ``datasets`` library, or a one-line refusal naming the extra that installs it."""
    try:
        import datasets
    except ImportError:
        raise TgoError(f"exporting as {fmt} needs the `datasets` library; pip install 'tgo[export]' "
                       "(or pip install datasets)") from None
    return datasets


def local_folder(out: Any) -> Path:
    text = os.fspath(out)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise TgoError(f"--out {text} is not a local folder; export writes a local folder (it is built beside "
                       "itself and renamed when complete), then copy it where it should go")
    return Path(text).expanduser()


def selection_facts(source: LayerSource) -> dict[str, Any]:
    """What decides an export's rows: the store, layer and the loader's selection (for the manifest)."""
    return {"store": source.url or "dataset", "layer": source.layer,
            "checkpoints": source.checkpoints.tolist(), "steps": source.steps[source.checkpoints].tolist(),
            "tokens": source.tokens.tolist(), "exclude_special": source.choice.exclude_special,
            "exclude_first": source.choice.exclude_first, "n_features": source.n_features,
            "store_dtype": str(source.dtype),
            "samples": None if source.chosen_samples is None else {
                "count": int(source.chosen_samples.sum()),
                "sha256": hashlib.sha256(np.flatnonzero(source.chosen_samples).tobytes()).hexdigest()}}


def manifest(fmt: str, facts: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an export: its format, the facts and their fingerprint, the tgo version.

    The fingerprint hashes the facts alone (as before there were several formats, so an earlier
    hf-datasets export is still recognised); the formats' facts differ in their keys."""
    import tgo_store

    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return {"format": fmt, "fingerprint": digest, **facts, "created_by": f"tgo {tgo_store.__version__}"}


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def shard_name(k: int, n: int) -> str:
    return f"data-{k:05d}-of-{n:05d}.arrow"


def write_shard_file(path: Path, features: Any, tables: Iterable[Any]) -> int:
    """Write the Arrow tables to shard ``path`` via a temporary renamed into place; its file size."""
    from datasets.arrow_writer import ArrowWriter

    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    writer = ArrowWriter(features=features, path=str(tmp))
    try:
        for table in tables:
            writer.write_table(table)
            del table  # not alive while the next one is built: one record batch at a time
        writer.finalize()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path.stat().st_size


def _finish(partial: Path, facts: dict[str, Any], features: Any, names: list[str], nbytes: int,
            description: str) -> None:
    """state.json, dataset_info.json (as ``Dataset.save_to_disk`` writes them) and the manifest."""
    datasets = datasets_module(facts["format"])
    info = asdict(datasets.DatasetInfo(description=description, features=features, dataset_size=nbytes))
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": facts["fingerprint"][:16],
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (partial / "dataset_info.json").write_text(json.dumps({k: info[k] for k in sorted(info)}, indent=2))
    (partial / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (partial / MANIFEST).write_text(json.dumps({**facts, "bytes": nbytes, "shards": len(names)}, indent=1))


def build(out: Any, facts: dict[str, Any], features: Any, shard_rows: list[int],
          write: Callable[[int, Path, Any], int], *, what: str, unit: str, progress: bool,
          description: str) -> ExportSummary:
    """Write an export of ``len(shard_rows)`` shards to ``out`` (see module doc): ``write(k, path, bar)``
    writes shard k to ``path`` and returns its size. A finished export of the same facts is left as is."""
    from tgo_store.progress import progress_bar

    start = time.perf_counter()
    target = local_folder(out)
    total = int(sum(shard_rows))
    if target.exists():
        done = read_manifest(target)
        if done is not None and done.get("fingerprint") == facts["fingerprint"]:
            return ExportSummary(str(target), done["rows"], done["shards"], done["shards"], done["bytes"],
                                 time.perf_counter() - start, already_complete=True)
        raise TgoError(f"{target} already exists and is not this export; choose another --out or remove it")
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    if partial.exists():
        found = read_manifest(partial)
        if found is None or found.get("fingerprint") != facts["fingerprint"]:
            raise TgoError(f"{partial} holds an unfinished export of another selection; remove it to start "
                           "this one, or re-run that export to finish it")
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MANIFEST).write_text(json.dumps(facts, indent=1))  # no state.json yet: not loadable
    names = [shard_name(k, len(shard_rows)) for k in range(len(shard_rows))]
    nbytes, reused = 0, 0
    with progress_bar(what, total, progress, unit=unit) as bar:
        for k, name in enumerate(names):
            path = partial / name
            if path.exists():  # finished by an earlier, interrupted run
                nbytes += path.stat().st_size
                reused += 1
                bar.advance(shard_rows[k])
                continue
            nbytes += write(k, path, bar)
    for stale in partial.glob("*.tmp"):  # temporaries of a run that was cut short
        stale.unlink()
    _finish(partial, facts, features, names, nbytes, description)
    os.replace(partial, target)
    return ExportSummary(str(target), total, len(names), reused, nbytes, time.perf_counter() - start)
