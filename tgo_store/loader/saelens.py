"""`tgo export --format saelens`: one layer in SAELens's cached-activations layout (SPEC 9).

What SAELens's ``CacheActivationsRunner`` writes and its ``ActivationsStore`` reads back with
``cached_activations_path``: one row per sequence, a column named by the layer's TransformerLens
hook (``hook_names``) holding ``Array2D((seq_len, D), float32)``, and ``token_ids``, int32 of
length seq_len; here also ``sample`` (the store's sample id, to find a row's text again). Rows
are shuffled with ``seed``: the sample blocks in a seeded order, cut into shards, and the rows of
each shard permuted (the loader's scheme, ``plan.EpochPlan``, by whole sequences).

Only a store whose every chosen position is valid fits one row per sequence of equal length
(packed text, no padding, no exclusions), and one checkpoint (a cache holds one model); others
are refused with the reason. Memory: one shard's rows in the store dtype (``shard_size`` counts
float32 bytes), plus one record batch in float32. Layout, resume and renaming: ``arrow.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.loader.arrow import (
    DEFAULT_SHARD_SIZE,
    MANIFEST,
    ExportSummary,
    build,
    datasets_module,
    manifest,
    selection_facts,
    write_shard_file,
)
from tgo_store.loader.hook_names import transformer_lens_hook
from tgo_store.loader.mixing import Window, parse_buffer
from tgo_store.loader.plan import EpochPlan
from tgo_store.loader.source import LayerSource
from tgo_store.store.validity import PositionChoice

FORMAT = "saelens"
BATCH_BYTES = 8 * 2**20  # float32 bytes converted and written at a time (at least one row)


def _refuse_unfit(source: LayerSource, layer: int) -> int:
    """The number of sequences, or why this selection does not fit SAELens's layout."""
    if len(source.checkpoints) != 1:
        raise TgoError(f"a SAELens cache holds one model's activations; choose one checkpoint of {source.where} "
                       f"(--checkpoints 3), not {len(source.checkpoints)}")
    if not source.has_token_id:
        raise TgoError(f"{source.where} has no token_id (an image store?); SAELens's cached layout holds each "
                       "sequence's token ids; export it with --format hf-datasets")
    n_seq = source.n_samples if source.chosen_samples is None else int(source.chosen_samples.sum())
    possible = n_seq * source.tokens.size
    valid = int(source.counts.sum())
    if valid != possible:
        raise TgoError(f"{possible - valid} of the {possible} chosen positions of layer {layer} of {source.where} are "
                       "not valid (padding, or left out by exclude_special / exclude_first); SAELens's layout has one "
                       "row per full sequence: export a packed text store without exclusions, or use --format "
                       "hf-datasets (one row per valid position)")
    return n_seq


def _features(hook: str, seq_len: int, n_features: int) -> Any:
    datasets = datasets_module(FORMAT)
    return datasets.Features({hook: datasets.Array2D(shape=(seq_len, n_features), dtype="float32"),
                              "token_ids": datasets.Sequence(datasets.Value("int32"), length=seq_len),
                              "sample": datasets.Value("int64")})


def _table(acts: np.ndarray, ids: np.ndarray, samples: np.ndarray, features: Any) -> Any:
    """Rows of sequences as an Arrow table of ``features`` (Array2D as a list of fixed-size lists)."""
    import pyarrow as pa

    _, t, d = acts.shape
    schema = features.arrow_schema
    hook, token_ids, sample = (schema.field(i) for i in range(3))
    inner = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(acts, np.float32).reshape(-1)), d)
    storage = pa.FixedSizeListArray.from_arrays(inner, t).cast(hook.type.storage_type)  # Array2D stores lists
    x = pa.ExtensionArray.from_storage(hook.type, storage)
    tok = pa.FixedSizeListArray.from_arrays(pa.array(ids.astype(np.int32).reshape(-1)), t).cast(token_ids.type)
    return pa.Table.from_arrays([x, tok, pa.array(samples, type=sample.type)], schema=schema)


def _write_shard(source: LayerSource, plan: EpochPlan, k: int, path: Path, features: Any, bar: Any) -> int:
    """Shard k: the sequences of window k of the seeded plan, read whole, written in a seeded permutation."""
    t, d = source.tokens.size, source.n_features
    fields = {key: dtype for key, dtype in source.fields(False).items()
              if key in ("activations", "sample", "token", "token_id")}
    win = Window.allocate(k, fields, plan.window_size(k), d, np.empty(0))
    offset = 0
    for part in plan.window_parts(0, k):
        source.read_part(part, win.arrays, offset)
        offset += part.hi - part.lo
    rows = plan.window_size(k) // t
    order = np.random.default_rng([plan.seed, k, 1]).permutation(rows)
    acts = win.arrays["activations"].reshape(rows, t, d)
    ids = win.arrays["token_id"].reshape(rows, t)
    samples = win.arrays["sample"].reshape(rows, t)[:, 0]
    step = max(1, BATCH_BYTES // (4 * t * d))

    def tables() -> Iterator[Any]:
        for lo in range(0, rows, step):
            take = order[lo:lo + step]
            yield _table(acts[take], ids[take], samples[take], features)
            bar.advance(take.size)

    return write_shard_file(path, features, tables())


def export_saelens(store: Any, layer: int, out: Any, *, checkpoint: int = -1,
                   checkpoints: Sequence[int] | None = None, tokens: Any = None, exclude_special: bool = False,
                   exclude_first: bool = False, samples: Any = None, shard_size: int | str = DEFAULT_SHARD_SIZE,
                   seed: int = 0, storage_options: dict | None = None, progress: bool = False) -> ExportSummary:
    """Write one layer to ``out`` in SAELens's cached-activations layout (see module doc).

    The selection is the loader's (one ``checkpoint``, ``tokens`` as the sequence's positions,
    ``samples``); ``shard_size`` (bytes like "500MB" or sequences as an int) sets the rows per
    Arrow file and the memory; ``seed`` the row order. SAELens reads it with
    ``cached_activations_path=out``, ``hook_name`` = the column (``ExportSummary.path``'s
    ``tgo_export.json`` names it), ``context_size`` = seq_len and ``d_in`` = D. Resumable.
    """
    source = LayerSource(store, layer, checkpoint if checkpoints is None else checkpoints, tokens,
                         PositionChoice(bool(exclude_special), bool(exclude_first)), storage_options, samples)
    n_seq = _refuse_unfit(source, layer)
    hook = transformer_lens_hook(source.dataset, source.layer, source.where)
    t, d = source.tokens.size, source.n_features
    features = _features(hook, t, d)
    try:
        shard_rows = parse_buffer(shard_size, 4 * t * d + 4 * t + 8)
    except TgoError:
        raise TgoError(f"shard size {shard_size!r} is neither a number of sequences nor a size like '500MB'; "
                       "pass e.g. 500MB") from None
    facts = manifest(FORMAT, {**selection_facts(source), "hook_name": hook, "context_size": t, "d_in": d,
                              "rows": n_seq, "shard_rows": shard_rows, "seed": int(seed)})
    plan = EpochPlan(source.counts, shard_rows * t, t, True, int(seed))
    description = (f"layer {facts['layer']} of {facts['store']} (step {facts['steps'][0]}) as SAELens cached "
                   f"activations: hook {hook}, context_size {t}, d_in {d}; exported by {facts['created_by']}; "
                   f"provenance in {MANIFEST}")
    summary = build(out, facts, features, [plan.window_size(k) // t for k in range(plan.n_windows)],
                    lambda k, path, bar: _write_shard(source, plan, k, path, features, bar),
                    what=f"export layer {source.layer} (sequences)", unit="sequences", progress=progress,
                    description=description)
    return replace(summary, note=f"SAELens: hook_name={hook}, context_size={t}, d_in={d}")
