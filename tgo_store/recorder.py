"""Live capture from a training loop: no checkpoint files, same store schema and writer.

    rec = Recorder("runs/exp1.zarr", model, probe_images, labels=probe_labels)
    for step in range(steps):
        train_step(...)
        if step % 100 == 0:
            rec.capture(step=step)

Each call records one checkpoint (the model as it is now) over the fixed probe inputs, then
puts the model back in the train/eval mode it was in. The Recorder hands its own model and
probe tensors to the ingest loop as a capture ``Session``: nothing is rebuilt from a spec and
nothing is written but the store. Like ``ingestion``, it joins capture and the store, so it
lives beside it, not in ``capture``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tgo_store.capture.checkpoints import CheckpointRef
from tgo_store.capture.hf import attach_tokenizer
from tgo_store.capture.losses import loss_for_ingest
from tgo_store.capture.models import LIVE_PREFIX, input_config
from tgo_store.capture.runner import BlockRunner, block_capturer
from tgo_store.capture.session import Session
from tgo_store.errors import TgoError
from tgo_store.ingestion import ingest_block, prepare_store
from tgo_store.no_space import naming_full_disk
from tgo_store.options import IngestOptions
from tgo_store.sources.arrays import array_source
from tgo_store.sources.base import Batch, DataSource, SourceOptions, TokenBatch
from tgo_store.sources.tokens import PREFIX as TOKENS_PREFIX
from tgo_store.sources.tokens import token_file_bytes, token_source
from tgo_store.store.gradient_precision import record_zero_fraction
from tgo_store.store.plan import StorePlan


class Recorder:
    """Capture a live model's activations on fixed probe inputs into a store, one step per call."""

    def __init__(self, store: str, model: Any, probe_inputs: Any, *, labels: Sequence[int] | None = None,
                 layers: Sequence[int] | None = None, tokens: Sequence[int] | None = None, dtype: str = "float16",
                 batch_size: int = 64, model_name: str = "live", storage_options: dict | None = None,
                 gradients: bool = False, tokenizer: Any = None):
        import torch

        self.store, self.model = store, model
        if isinstance(probe_inputs, TokenBatch):  # text: token ids + masks (a text source's batch.inputs)
            self.inputs = probe_inputs
            if tokenizer is not None:
                attach_tokenizer(model, tokenizer)  # recorded in the store's tokenizer attrs
        else:
            self.inputs = torch.as_tensor(np.asarray(probe_inputs, dtype=np.float32))
            if self.inputs.ndim != 4:
                raise TgoError(f"probe inputs have shape {tuple(self.inputs.shape)}; "
                               "pass a (N, C, H, W) batch of images or a TokenBatch of token ids")
        self.labels = np.asarray(labels if labels is not None else np.full(len(self.inputs), -1), np.int64)
        self.model_name, self.storage_options = model_name, storage_options
        self._probe = self._probe_bytes()
        # the ingest options of every step; a live model unchanged between two steps has the same weights
        self.options = IngestOptions(model_spec=LIVE_PREFIX + "".join(ch if ch.isalnum() else "_" for ch in model_name),
                                     data_spec=self._probe_name(), layers=layers, tokens=tokens, dtype=dtype,
                                     batch_size=batch_size, storage_options=dict(storage_options or {}),
                                     gradients=gradients,  # also ∂L/∂h of the classification loss (needs labels)
                                     allow_duplicate_weights=True)

    def _probe_bytes(self) -> bytes:
        """The probe inputs as the bytes of an .npz: the store's dataset fingerprint (and text corpus hash)."""
        buffer = io.BytesIO()
        if isinstance(self.inputs, TokenBatch):
            buffer.write(token_file_bytes(self.inputs, self.labels))
        else:
            np.savez(buffer, images=self.inputs.numpy(), labels=self.labels)
        return buffer.getvalue()

    def _probe_name(self) -> str:
        """The dataset name stored for the probe: the spelling of stores from before (a name, not a file)."""
        if isinstance(self.inputs, TokenBatch):
            raw = b"".join(np.asarray(a).tobytes() for a in (self.inputs.ids, self.inputs.attention_mask,
                                                             self.inputs.special, self.labels))
            return TOKENS_PREFIX + os.path.join(tempfile.gettempdir(),
                                                f"tgo-probe-{hashlib.sha256(raw).hexdigest()[:16]}.npz")
        digest = hashlib.sha256(self.inputs.numpy().tobytes() + self.labels.tobytes()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"tgo-probe-{digest}.npz")

    def _source(self) -> DataSource:
        """The probe inputs as a data source, opened with what it needs of the model."""
        options = SourceOptions.of(**input_config(self.model))
        if isinstance(self.inputs, TokenBatch):
            return token_source(self.options.data_spec, self._probe, options)
        return array_source(self.options.data_spec, self._probe, options)

    def _session(self) -> Session:
        """The live model, its probe source, the capturer and the loss: what ``prepare_store`` records."""
        source = self._source()
        options = self.options
        capturer = block_capturer(self.model, source, options.layers, options.tokens, None)
        loss = loss_for_ingest(self.model, source, capturer, options.gradients, options.loss, options.mask_rate,
                               options.mask_seed)
        return Session(self.model, source, capturer, loss)

    def _state_sha(self) -> str:
        import torch

        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def capture(self, step: int) -> None:
        """Record the model as it is now as checkpoint `step`; restores train/eval mode.

        The model stays on its own device and in its own dtype; the blocks go through the same
        runner and ``ingest_block`` as ``tgo ingest``.
        """
        import torch

        from tgo_store.capturers import make_capturer

        was_training = self.model.training
        try:
            sha = self._state_sha()
            ref = CheckpointRef(url=f"live:{self.model_name}@step{int(step)}", step=int(step), sha256=sha, builtin=True)
            plan = self._plan(ref)
            capturer = make_capturer(self.model, layers=plan.layers, tokens=plan.tokens, example=self.inputs[:1])
            runner = BlockRunner(plan, 0, self.model, capturer, self._batches, next(self.model.parameters()).device,
                                 None, source_name=f"{self.model_name} at step {step}")
            with naming_full_disk(self.store):  # a full disk: one line, and the same capture() resumes
                for block in range(plan.n_blocks):
                    ingest_block(plan, 0, block, runner=runner)
            if plan.loss is not None:
                record_zero_fraction(self.store, self.storage_options)
        finally:
            self.model.train(was_training)
            torch.set_grad_enabled(True)

    def _batches(self, batch_size: int, start: int, stop: int) -> Iterator[Batch]:
        """The probe inputs [start, stop) in batches, as a data source yields them."""
        for i in range(start, stop, batch_size):
            end = min(i + batch_size, stop)
            yield Batch(self.inputs[i:end], np.arange(i, end), self.labels[i:end])

    def _plan(self, ref: CheckpointRef) -> StorePlan:
        return prepare_store(self.store, dataclasses.replace(self.options, checkpoints=[ref]), check_checkpoints=False,
                             session=self._session())
