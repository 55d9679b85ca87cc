"""The ingest loop: for each checkpoint, for each missing block: capture -> write -> commit.

``prepare_store`` (``store.prepare``) fixes the store's metadata once and returns a picklable
``StorePlan``; ``ingest`` then captures every missing block on the caller's thread
(``capture.runner``) while a background thread writes and commits them (``store.writer``);
``ingest_block`` does one (checkpoint, sample block) region on its own, so the same plan
serves the serial loop here and parallel workers in ``tgo sweep``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tgo_store.capture.runner import BlockRunner
from tgo_store.capture.transfer import BufferPool
from tgo_store.device import resolve_device
from tgo_store.options import IngestOptions, ingest_options
from tgo_store.store import schema as S
from tgo_store.store.gradient_precision import record_zero_fraction
from tgo_store.store.location import open_activations_for_writing
from tgo_store.store.plan import StorePlan, missing_blocks
from tgo_store.store.prepare import prepare_store
from tgo_store.store.space import named_disk_full
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
    data, grads = runner.capture_block(block)
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
    with named_disk_full(url):  # ENOSPC anywhere: one line, and a re-run resumes
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
                data, grads = runner.capture_block(block)
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
