"""Creating a store, or appending checkpoints to it, from facts; refusing anything that would mix data.

The ingest loop (``tgo_store.ingestion.prepare_store``) opens the model and the data, probes each
new checkpoint, and hands the store what they are as ``StoreFacts``. Here, under the metadata
lock, the store is created, or checked to hold this run's model, data and selection, and the
checkpoints are placed along its ``checkpoint`` dim; the result is the ``StorePlan`` every
block is written from. Nothing here imports capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import tgo_store
from tgo_store.errors import TgoError
from tgo_store.facts import MASKED_LM, CheckpointRef, LossSpec
from tgo_store.no_space import no_space_error
from tgo_store.options import IngestOptions
from tgo_store.store import schema as S
from tgo_store.store.checks import (
    check_compatible,
    check_same,
    check_same_loss,
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
from tgo_store.store.temporaries import sweep_temporaries

DTYPES = ("float16", "float32")
PRECISIONS = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class StoreFacts:
    """What the store records of a run, as plain values: the model and data as capture found them."""

    description: dict  # the model: spec, class, options, parameter shapes (+ precision)
    dataset: dict  # name, fingerprint, n_samples
    source_attrs: dict  # the source's own attrs (text: tokenizer and text settings)
    n_samples: int
    layer_indices: list[int]
    layer_names: list[str]
    token_indices: np.ndarray
    token_kinds: list[str]
    token_rows: np.ndarray
    token_cols: np.ndarray
    feature_dim: int
    sample_ids: np.ndarray
    labels: np.ndarray
    positions: Any = None  # text: token ids and masks per (sample, token); None for images
    loss: LossSpec | None = None  # with --gradients: the loss whose ∂L/∂h is recorded
    mask_token_id: int | None = None  # masked LM: the tokenizer's mask token


def check_options(options: IngestOptions) -> None:
    """Refuse storage options no store can hold, before anything is opened."""
    if options.dtype not in DTYPES:
        raise TgoError(f"unknown --dtype {options.dtype}; use float16 or float32")
    check_gradient_dtype(options.gradient_dtype)
    if options.precision not in PRECISIONS:
        raise TgoError(f"unknown --precision {options.precision}; use {', '.join(PRECISIONS)}")
    if options.batch_size < 1:
        raise TgoError(f"--batch-size must be at least 1, got {options.batch_size}")


@dataclass(frozen=True)
class Target:
    """The store about to be prepared: its Zarr store and its records, checked to be tgo's."""

    url: str
    store: Any
    records: RecordStore

    def existing(self) -> list[tuple[int, str, str]]:
        """The (step, path, sha256) of every checkpoint the store already holds."""
        return existing_in(self.store, self.records)


def open_target(url: str, options: IngestOptions) -> Target:
    """Open the store URL; refuse a folder or group tgo did not write."""
    records = store_records(url, options.storage_options)
    store = open_zarr_store(url, storage_options=options.storage_options)
    refuse_foreign(store, records, url)
    return Target(url, store, records)


def prepare_metadata(target: Target, options: IngestOptions, refs: Sequence[CheckpointRef],
                     facts: StoreFacts) -> StorePlan:
    """Under the metadata lock: create the store or check it holds this run; place the checkpoints."""
    url, store, records = target.url, target.store, target.records
    dtype, loss_spec = options.dtype, facts.loss
    itemsize = 2 if dtype == "float16" else 4
    layout = choose_layout(facts.n_samples, len(facts.token_indices), facts.feature_dim, itemsize,
                           options.batch_size, options.samples_per_block)
    with metadata_lock(url):
        try:
            if open_group(store, url) is not None:  # an existing store: refuse a read-only one before any write
                check_writable(records, url)
            recover(store, records)
            sweep_temporaries(records, set(read_commits(records)), metadata_locked=True)  # of killed writes
            group = open_group(store, url)
            grad_dtype = check_gradient_dtype(options.gradient_dtype, stored_gradient_dtype(group))
            if group is None:
                spec = StoreSpec(
                    n_samples=facts.n_samples, layer_indices=list(facts.layer_indices),
                    layer_names=list(facts.layer_names), token_indices=np.asarray(facts.token_indices),
                    token_kinds=facts.token_kinds, token_rows=facts.token_rows,
                    token_cols=facts.token_cols, n_features=facts.feature_dim,
                    sample_ids=facts.sample_ids, labels=facts.labels, dtype=dtype,
                    chunk_shape=layout.chunk_shape(facts.feature_dim),
                    shard_shape=layout.shard_shape(facts.feature_dim),
                    attrs={S.ATTR_SCHEMA: S.SCHEMA_VERSION, S.ATTR_MODEL: facts.description,
                           S.ATTR_DATASET: facts.dataset, S.ATTR_CREATED_BY: f"tgo {tgo_store.__version__}",
                           "tgo_layout": {"samples_per_block": layout.samples_per_block,
                                          "tokens_per_chunk": layout.tokens_per_chunk},
                           "tgo_batch_size": options.batch_size, **facts.source_attrs,
                           **S.final_norm_attrs(facts.layer_indices, facts.layer_names),
                           **({S.ATTR_SCHEMA: S.TEXT_SCHEMA_VERSION, S.ATTR_LOSS: loss_spec.attr()} if loss_spec else {})},
                    positions=facts.positions, gradients=loss_spec is not None,
                    gradient_dtype=grad_dtype)
                group = create_store(store, spec, records)
                if loss_spec is not None and loss_spec.kind == MASKED_LM:
                    from tgo_store.store.masked_positions import write_masked_positions

                    write_masked_positions(group, facts.positions, facts.sample_ids, loss_spec, facts.mask_token_id,
                                           facts.token_indices, spec.shard_shape[2])
            else:
                for key, value in facts.source_attrs.items():  # text: tokenizer and text settings
                    check_same(dict(group.attrs), key, value, f"'{key}' setting", url)
                layout = check_compatible(group, url, facts.description, facts.dataset, facts, dtype)
                check_same_loss(dict(group.attrs).get(S.ATTR_LOSS), loss_spec, url)
            indices = place_checkpoints(group, records, url, refs)
            finish(store, records)
        except (PermissionError, OSError) as exc:
            if (full := no_space_error(exc, url)) is not None:
                raise full from exc
            raise TgoError(f"cannot write the store at {url} ({type(exc).__name__}: {exc}); "
                           "choose a writable location") from exc
    return StorePlan(url=url, options=options, checkpoints=tuple(refs), checkpoint_indices=tuple(indices),
                     n_samples=facts.n_samples, layers=tuple(facts.layer_indices),
                     tokens=None if options.tokens is None else tuple(int(t) for t in facts.token_indices),
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
