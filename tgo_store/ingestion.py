"""The ingest loop: for each checkpoint, for each missing block: capture -> write -> commit.

This is the one place where capture and the store meet. ``prepare_store`` opens a capture
``Session`` (model, source, capturer, loss), probes each new checkpoint, and hands the store
what it found as ``StoreFacts`` (``store.prepare``), which fix the store's metadata once and
give a picklable ``StorePlan``. ``ingest`` then captures every missing block on the caller's
thread (``capture.runner``) while a background thread writes and commits them
(``store.writer``); ``ingest_block`` does one (checkpoint, sample block) region on its own, so
the same plan serves the serial loop here, parallel workers in ``tgo sweep`` and the Recorder.
A block whose capture is refused leaves a failure record (``store.commits``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgo_store.capture.block import probe_checkpoints
from tgo_store.capture.checkpoints import refuse_duplicates
from tgo_store.capture.runner import BlockRunner
from tgo_store.capture.session import Session, checkpoint_refs
from tgo_store.capture.transfer import BufferPool
from tgo_store.device_option import resolve_device
from tgo_store.errors import TgoError
from tgo_store.facts import MASKED_LM
from tgo_store.no_space import naming_full_disk
from tgo_store.options import IngestOptions, ingest_options
from tgo_store.store import schema as S
from tgo_store.store.commits import record_failure
from tgo_store.store.gradient_precision import record_zero_fraction
from tgo_store.store.location import open_activations_for_writing, store_records
from tgo_store.store.plan import StorePlan, missing_blocks
from tgo_store.store.prepare import StoreFacts, check_options, open_target, prepare_metadata
from tgo_store.store.writer import BackgroundWriter, write_block

WRITE_QUEUE_DEPTH = 2  # blocks waiting for the writer; memory is bounded by depth + 2 blocks


@dataclass
class BlockStats:
    samples: int
    bytes: int
    seconds: float


@dataclass
class IngestSummary:
    url: str
    checkpoints: int
    blocks_written: int
    blocks_skipped: int
    samples: int
    bytes: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


def prepare_store(url: str, options: IngestOptions | None = None, *, check_checkpoints: bool = True,
                  session: Session | None = None, **values: Any) -> StorePlan:
    """Create the store or append checkpoints to it; refuse anything that would mix data.

    ``options`` (or the same fields as keywords, ``IngestOptions``) say what to record; the
    model, data, capturer and loss come from them, or from ``session`` (the live ``Recorder``'s).
    Before the store is touched, each new checkpoint is loaded into the model and runs one
    batch (``check_checkpoints``; the live ``Recorder`` has no files and checks while capturing).

    ``precision`` is the dtype the model computes in (float32, or float16/bfloat16 for speed on
    a GPU); it changes the activations, so it is part of the store's model description.

    A checkpoint whose weights the store already holds under another path is refused unless
    ``allow_duplicate_weights``; a folder or Zarr group that tgo did not write is refused.
    """
    options = options if options is not None else ingest_options(**values)
    check_options(options)
    refs = checkpoint_refs(options)
    target = open_target(url, options)
    stored = target.existing()
    if not options.allow_duplicate_weights:  # weights the store holds under another path
        refuse_duplicates(refs, stored)
    session = session or Session.from_options(options)
    facts = store_facts(session, options)
    if check_checkpoints:
        known = {path for _, path, _ in stored}
        new = [r for r in refs if r.url not in known]
        probe_checkpoints(session.model, session.source, session.capturer, new, options.dtype, options.precision)
    return prepare_metadata(target, options, refs, facts)


def store_facts(session: Session, options: IngestOptions) -> StoreFacts:
    """What the store records of a session: the model's description, the data, the selection, the loss."""
    from tgo_store.capture.hf import tokenizer_of
    from tgo_store.capture.models import model_description

    model, source, capturer, loss = session.model, session.source, session.capturer, session.loss
    description = model_description(model, options.model_spec, dict(options.model_kwargs or {}))
    if options.precision != "float32":  # stores from before this option computed in float32 and say nothing
        description["precision"] = options.precision
    layout = capturer.token_layout
    return StoreFacts(
        description=description, dataset={"name": options.data_spec, "fingerprint": source.fingerprint(),
                                          "n_samples": len(source)},
        source_attrs=source.store_attrs(), n_samples=len(source), layer_indices=list(capturer.layer_indices),
        layer_names=list(capturer.layer_names), token_indices=np.asarray(capturer.token_indices),
        token_kinds=layout.kinds, token_rows=layout.rows, token_cols=layout.cols, feature_dim=capturer.feature_dim,
        sample_ids=source.sample_ids, labels=source.labels, positions=source.positions(), loss=loss,
        mask_token_id=tokenizer_of(model).mask_token_id if loss is not None and loss.kind == MASKED_LM else None)


def capture_block(runner: BlockRunner, block: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``runner.capture_block``; a refused block leaves a failure record that `tgo info` and `tgo analyze`
    explain (past the one-batch check the store is already extended), instead of a slot that reads as
    merely unfinished."""
    plan = runner.plan
    try:
        return runner.capture_block(block)
    except TgoError as exc:
        record_failure(store_records(plan.url, plan.storage_options), plan.checkpoint_indices[runner.position],
                       {"block": block, "step": plan.checkpoints[runner.position].step, "reason": str(exc)})
        raise


def ingest_block(plan: StorePlan, position: int, block: int, *, device: str = "auto",
                 model_cache: dict | None = None, runner: BlockRunner | None = None) -> BlockStats:
    """Capture and write one (checkpoint, sample block) region; safe to repeat.

    The model comes from ``runner`` when given (the live Recorder's), else from ``model_cache``
    (a sweep worker's, one checkpoint at a time), else it is built from the plan.
    """
    start_time = time.perf_counter()
    key = plan.checkpoints[position].sha256
    runner = runner or (model_cache.get(key) if model_cache is not None else None)
    if runner is None:
        runner = BlockRunner.from_plan(plan, position, device)
        if model_cache is not None:
            model_cache.clear()
            model_cache[key] = runner
    data, grads = capture_block(runner, block)
    try:
        write_block(plan, position, block, data, gradients=grads)
    finally:
        runner.release(data, grads)
    return BlockStats(samples=data.shape[1], bytes=data.nbytes + (0 if grads is None else grads.nbytes),
                      seconds=time.perf_counter() - start_time)


def ingest(url: str, options: IngestOptions | None = None, *, progress: bool = True, **values: Any) -> IngestSummary:
    """Ingest every missing (checkpoint, block): capture on the caller's thread, write in the background.

    ``options`` (or its fields as keywords: ``model_spec``, ``checkpoints``, ``data_spec``, ...;
    see ``IngestOptions``) say what to record.
    """
    options = options if options is not None else ingest_options(**values)
    resolve_device(options.device)  # an unusable device is refused before the store is touched
    with naming_full_disk(url):  # ENOSPC anywhere: one line, and a re-run resumes
        return _ingest(url, options, progress)


def _ingest(url: str, options: IngestOptions, progress: bool) -> IngestSummary:
    from tgo_store.progress import IngestProgress

    device, storage_options = options.device, options.storage_options
    plan = prepare_store(url, options)
    todo = missing_blocks(plan)
    array = open_activations_for_writing(url, storage_options)
    grad_array = open_activations_for_writing(url, storage_options, S.GRADIENTS) if plan.loss else None
    started = time.perf_counter()
    samples = 0
    with IngestProgress(plan, todo, enabled=progress) as bar:
        writer = BackgroundWriter(lambda p, b, d, g: write_block(plan, p, b, d, array, g, grad_array),
                                  depth=WRITE_QUEUE_DEPTH)
        pool = None
        try:
            runner = None
            for position, block in todo:
                if runner is None or runner.position != position:
                    pool = pool or BufferPool(resolve_device(device),
                                              size=(WRITE_QUEUE_DEPTH + 2) * (2 if plan.loss else 1))
                    runner = BlockRunner.from_plan(plan, position, device, pool)
                data, grads = capture_block(runner, block)
                writer.put(position, block, data, grads, on_done=lambda d=data, p=position: bar.advance(p, d),
                           release=lambda d=data, g=grads, r=runner: r.release(d, g))
                samples += data.shape[1]
        finally:
            writer.close()
    if plan.loss is not None:
        record_zero_fraction(url, storage_options)
    return IngestSummary(url=url, checkpoints=len(plan.checkpoints), blocks_written=len(todo),
                         blocks_skipped=len(plan.checkpoints) * plan.n_blocks - len(todo), samples=samples,
                         bytes=writer.bytes_written, seconds=time.perf_counter() - started)
