"""A model loaded at one checkpoint with its capturer and batches, capturing block after block.

The model comes from its spec (``models``), the source is opened with what it needs of the
model (image format or tokenizer), and the capturer (``capturers`` registry) says which states
are recorded. ``ingest`` keeps one runner per checkpoint; ``ingest_block`` workers of a sweep
keep theirs in a per-process cache of one; the live ``Recorder`` makes one per step around its
own model. All of them capture through ``BlockRunner.capture_block``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tgo_store.capture.block import capture_block
from tgo_store.capture.checkpoints import load_checkpoint_into
from tgo_store.capture.losses import capture_gradient_block
from tgo_store.capture.models import build_model, input_config
from tgo_store.capture.transfer import BlockFiller, BufferPool
from tgo_store.capturers import make_capturer
from tgo_store.device_option import resolve_device
from tgo_store.sources import DataSource, open_source
from tgo_store.sources.base import Batch

if TYPE_CHECKING:  # the runner reads a plan's fields; capture imports nothing of the store
    from tgo_store.store.plan import StorePlan


def open_parts(model_spec: str, model_kwargs: dict, data_spec: str,
                data_options: dict | None = None) -> tuple[Any, DataSource]:
    """The model, then the source opened with what it needs of the model (image format or tokenizer)."""
    model = build_model(model_spec, **model_kwargs)
    source = open_source(data_spec, **input_config(model), **(data_options or {}))
    return model, source


def block_capturer(model: Any, source: DataSource, layers: Sequence[int] | None, tokens: Sequence[int] | None,
                   hook_modules: Sequence[str] | None) -> Any:
    """The capturer of a model for the selection, learning what it needs from one example batch of the source."""
    example = next(source.batches(1)).inputs  # capturers that need one learn the token count from it
    return make_capturer(model, layers=layers, tokens=tokens, hook_modules=hook_modules, example=example)


class BlockRunner:
    """A loaded model, its capturer and the batches of a plan's samples, reused across blocks.

    ``from_plan`` builds the model from its spec at one checkpoint (ingest, sweep workers); the
    live ``Recorder`` hands in its own model as it is, on its own device and dtype.
    """

    def __init__(self, plan: StorePlan, position: int, model: Any, capturer: Any,
                 batches: Callable[[int, int, int], Iterable[Batch]], device: Any, compute_dtype: Any,
                 pool: BufferPool | None = None, source_name: str | None = None):
        self.plan, self.position, self.model, self.capturer, self.batches = plan, position, model, capturer, batches
        self.device, self.compute_dtype = device, compute_dtype
        self.source_name = source_name or f"checkpoint {plan.checkpoints[position].url}"
        self.filler = BlockFiller(device, plan.dtype, pool)
        self.grad_filler = BlockFiller(device, plan.gradient_dtype, self.filler.pool) if plan.loss else None

    @classmethod
    def from_plan(cls, plan: StorePlan, position: int, device: str, pool: BufferPool | None = None) -> BlockRunner:
        """The plan's model built from its spec, loaded at checkpoint ``position``, on ``device``."""
        import torch

        model, source = open_parts(plan.model_spec, plan.model_kwargs, plan.data_spec, plan.data_options)
        load_checkpoint_into(model, plan.checkpoints[position])
        where, compute_dtype = torch.device(resolve_device(device)), getattr(torch, plan.precision)
        model.to(where, compute_dtype)
        layers = list(plan.layers) if not plan.hook_modules else None
        capturer = block_capturer(model, source, layers, plan.tokens, plan.hook_modules)
        return cls(plan, position, model, capturer, source.batches, where, compute_dtype, pool)

    def capture_block(self, block: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Every layer and token of one sample block, in the storage dtype, and with gradients
        their ∂L/∂h from the same forward (else None).

        The returned arrays are pooled host buffers: give them back with ``release`` once stored.
        """
        plan = self.plan
        start, stop = plan.layout.block_range(block, plan.n_samples)
        batches = self.batches(plan.batch_size, start, stop)
        where = (self.source_name, f"samples {start}-{stop - 1}")
        if plan.loss is not None:
            pairs = ((self.capturer.prepare(b.inputs, self.device, self.compute_dtype), b) for b in batches)
            return capture_gradient_block((self.filler, self.grad_filler), self.capturer, pairs,
                                          stop - start, plan.loss, *where)
        inputs = (self.capturer.prepare(b.inputs, self.device, self.compute_dtype) for b in batches)
        return capture_block(self.filler, self.capturer, inputs, stop - start, *where), None

    def release(self, *arrays: np.ndarray | None) -> None:
        for data in arrays:
            if data is not None:
                self.filler.pool.release(data)
