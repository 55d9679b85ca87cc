"""Creating a store, or appending checkpoints to it, once; refusing anything that would mix data.

``prepare_store`` opens the model and the data, chooses the layout, probes each new
checkpoint with one batch, then (under the metadata lock) creates the store or checks that
it holds this run's model, data and selection, and places the checkpoints along its
``checkpoint`` dim. It returns the ``StorePlan`` every block is written from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import tgo_store
from tgo_store.capture.block import probe_checkpoints
from tgo_store.capture.checkpoints import CheckpointRef, refuse_duplicates, resolve_checkpoints
from tgo_store.capture.losses import MASKED_LM, check_same_loss, loss_for_ingest
from tgo_store.capture.models import default_checkpoints, model_description
from tgo_store.capture.runner import block_capturer, open_parts
from tgo_store.errors import TgoError
from tgo_store.options import IngestOptions, ingest_options
from tgo_store.store import schema as S
from tgo_store.store.checks import (
    check_compatible,
    check_same,
    check_writable,
    existing_in,
    open_group,
    refuse_foreign,
)
from tgo_store.store.commits import read_commits
from tgo_store.store.gradient_precision import check_gradient_dtype, stored_gradient_dtype
from tgo_store.store.layout import choose_layout
from tgo_store.store.location import open_zarr_store, store_records
from tgo_store.store.metadata import (
    StoreSpec,
    append_checkpoints,
    create_store,
    existing_checkpoints,
    finish,
    metadata_lock,
    recover,
    set_checkpoint,
)
from tgo_store.store.plan import StorePlan
from tgo_store.store.records import RecordStore
from tgo_store.store.space import disk_full_error, is_disk_full
from tgo_store.store.temporaries import sweep_temporaries

DTYPES = ("float16", "float32")
PRECISIONS = ("float32", "float16", "bfloat16")


def prepare_store(url: str, options: IngestOptions | None = None, *, check_checkpoints: bool = True,
                  **values: Any) -> StorePlan:
    """Create the store or append checkpoints to it; refuse anything that would mix data.

    ``options`` (or the same fields as keywords, ``IngestOptions``) say what to record.
    Before the store is touched, each new checkpoint is loaded into the model and runs one
    batch (``check_checkpoints``; the live ``Recorder`` has no files and checks while capturing).

    ``precision`` is the dtype the model computes in (float32, or float16/bfloat16 for speed on
    a GPU); it changes the activations, so it is part of the store's model description.

    A checkpoint whose weights the store already holds under another path is refused unless
    ``allow_duplicate_weights``; a folder or Zarr group that tgo did not write is refused.
    """
    options = options if options is not None else ingest_options(**values)
    model_spec, checkpoints, data_spec = options.model_spec, options.checkpoints, options.data_spec
    layers, tokens, dtype, batch_size = options.layers, options.tokens, options.dtype, options.batch_size
    samples_per_block, hook_modules, precision = options.samples_per_block, options.hook_modules, options.precision
    storage_options, data_options, gradients = options.storage_options, options.data_options, options.gradients
    loss, mask_rate, mask_seed = options.loss, options.mask_rate, options.mask_seed
    gradient_dtype, allow_duplicate_weights = options.gradient_dtype, options.allow_duplicate_weights
    if dtype not in DTYPES:
        raise TgoError(f"unknown --dtype {dtype}; use float16 or float32")
    check_gradient_dtype(gradient_dtype)
    if precision not in PRECISIONS:
        raise TgoError(f"unknown --precision {precision}; use {', '.join(PRECISIONS)}")
    if batch_size < 1:
        raise TgoError(f"--batch-size must be at least 1, got {batch_size}")
    model_kwargs = dict(options.model_kwargs or {})
    refs = [c if isinstance(c, CheckpointRef) else None for c in checkpoints or []] if not isinstance(checkpoints, str) else []
    refs = list(checkpoints) if refs and all(refs) else (
        resolve_checkpoints(checkpoints, allow_duplicate_weights) if checkpoints else default_checkpoints(model_spec))
    if not refs:
        raise TgoError("no checkpoints given; pass --checkpoints with a glob or a list of files")
    records = store_records(url, storage_options)
    store = open_zarr_store(url, storage_options=storage_options)
    refuse_foreign(store, records, url)
    if not allow_duplicate_weights:
        refuse_duplicates(refs, existing_in(store, records))
    model, source = open_parts(model_spec, model_kwargs, data_spec, data_options)
    capturer = block_capturer(model, source, layers, tokens, hook_modules)
    loss_spec = loss_for_ingest(model, source, capturer, gradients, loss, mask_rate, mask_seed)
    description = model_description(model, model_spec, model_kwargs)
    if precision != "float32":  # stores from before this option computed in float32 and say nothing
        description["precision"] = precision
    dataset = {"name": data_spec, "fingerprint": source.fingerprint(), "n_samples": len(source)}
    itemsize = 2 if dtype == "float16" else 4
    layout = choose_layout(len(source), len(capturer.token_indices), capturer.feature_dim, itemsize,
                           batch_size, samples_per_block)
    known = {path for _, path, _ in existing_in(store)}
    if check_checkpoints:
        probe_checkpoints(model, source, capturer, [r for r in refs if r.url not in known], dtype, precision)
    with metadata_lock(url):
        try:
            if open_group(store, url) is not None:  # an existing store: refuse a read-only one before any write
                check_writable(records, url)
            recover(store, records)
            sweep_temporaries(records, set(read_commits(records)), metadata_locked=True)  # of killed writes
            group = open_group(store, url)
            grad_dtype = check_gradient_dtype(gradient_dtype, stored_gradient_dtype(group))
            if group is None:
                spec = StoreSpec(
                    n_samples=len(source), layer_indices=list(capturer.layer_indices),
                    layer_names=list(capturer.layer_names), token_indices=np.asarray(capturer.token_indices),
                    token_kinds=capturer.token_layout.kinds, token_rows=capturer.token_layout.rows,
                    token_cols=capturer.token_layout.cols, n_features=capturer.feature_dim,
                    sample_ids=source.sample_ids, labels=source.labels, dtype=dtype,
                    chunk_shape=layout.chunk_shape(capturer.feature_dim),
                    shard_shape=layout.shard_shape(capturer.feature_dim),
                    attrs={S.ATTR_SCHEMA: S.SCHEMA_VERSION, S.ATTR_MODEL: description, S.ATTR_DATASET: dataset,
                           S.ATTR_CREATED_BY: f"tgo {tgo_store.__version__}",
                           "tgo_layout": {"samples_per_block": layout.samples_per_block,
                                          "tokens_per_chunk": layout.tokens_per_chunk},
                           "tgo_batch_size": batch_size, **source.store_attrs(),
                           **({S.ATTR_SCHEMA: S.TEXT_SCHEMA_VERSION, S.ATTR_LOSS: loss_spec.attr()} if loss_spec else {})},
                    positions=source.positions(), gradients=loss_spec is not None,
                    gradient_dtype=grad_dtype)
                group = create_store(store, spec, records)
                if loss_spec is not None and loss_spec.kind == MASKED_LM:
                    from tgo_store.capture.hf import tokenizer_of
                    from tgo_store.store.masked_positions import write_masked_positions

                    write_masked_positions(group, source.positions(), source.sample_ids, loss_spec,
                                           tokenizer_of(model).mask_token_id, capturer.token_indices,
                                           spec.shard_shape[2])
            else:
                for key, value in source.store_attrs().items():  # text: tokenizer and text settings
                    check_same(dict(group.attrs), key, value, f"'{key}' setting", url)
                layout = check_compatible(group, url, description, dataset, capturer, dtype)
                check_same_loss(dict(group.attrs).get(S.ATTR_LOSS), loss_spec, url)
            indices = place_checkpoints(group, records, url, refs)
            finish(store, records)
        except (PermissionError, OSError) as exc:
            if is_disk_full(exc):
                raise disk_full_error(exc, url) from exc
            raise TgoError(f"cannot write the store at {url} ({type(exc).__name__}: {exc}); "
                           "choose a writable location") from exc
    return StorePlan(url=url, options=options, checkpoints=tuple(refs), checkpoint_indices=tuple(indices),
                     n_samples=len(source), layers=tuple(capturer.layer_indices),
                     tokens=None if tokens is None else tuple(int(t) for t in capturer.token_indices),
                     layout=layout, loss=loss_spec, gradient_dtype=grad_dtype)


def place_checkpoints(group: Any, records: RecordStore, url: str, refs: Sequence[CheckpointRef]) -> list[int]:
    """The slot of each checkpoint: its existing slot, or a new one appended at the end."""
    existing = existing_checkpoints(group)
    by_path = {path: (i, sha) for i, (_, path, sha) in enumerate(existing)}
    by_weights = {(sha, step): i for i, (step, _, sha) in reversed(list(enumerate(existing)))}
    indices, new = [], []
    for ref in refs:
        if ref.url in by_path:
            index, sha = by_path[ref.url]
            if sha != ref.sha256:
                raise TgoError(f"checkpoint {ref.url} changed since it was ingested (sha256 {sha[:12]} -> "
                               f"{ref.sha256[:12]}); restore the file or ingest into a new store")
            set_checkpoint(group, index, ref.step, ref.url)  # a damaged `checkpoint` coordinate: the file's step
            indices.append(index)
        elif (ref.sha256, ref.step) in by_weights:  # the same checkpoint at a new path: its slot, the new path
            indices.append(by_weights[(ref.sha256, ref.step)])
            set_checkpoint(group, indices[-1], ref.step, ref.url)
        else:
            indices.append(len(existing) + len(new))
            new.append(ref)
    if new:
        append_checkpoints(group, records, [r.step for r in new], [r.url for r in new], [r.sha256 for r in new])
    return indices
