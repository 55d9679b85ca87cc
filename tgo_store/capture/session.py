"""What a run captures with: the model, its data source, the capturer and the loss, as one session.

``Session.from_options`` builds it from the ingest options (``tgo ingest``, a sweep, Python); the
live ``Recorder`` builds one from its own model and probe inputs. The ingest loop
(``tgo_store.ingestion``) hands the store what the session is, as facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tgo_store.capture.checkpoints import resolve_checkpoints
from tgo_store.capture.losses import loss_for_ingest
from tgo_store.capture.models import default_checkpoints
from tgo_store.capture.runner import block_capturer, open_parts
from tgo_store.errors import TgoError
from tgo_store.facts import CheckpointRef, LossSpec
from tgo_store.options import IngestOptions
from tgo_store.sources import DataSource


@dataclass
class Session:
    """A model with its data source, its capturer and the loss whose ∂L/∂h is recorded (None: no gradients)."""

    model: Any
    source: DataSource
    capturer: Any
    loss: LossSpec | None

    @classmethod
    def from_options(cls, options: IngestOptions) -> Session:
        """The model built from its spec, the source opened for it, its capturer and the run's loss."""
        model, source = open_parts(options.model_spec, dict(options.model_kwargs or {}), options.data_spec,
                                   options.data_options)
        capturer = block_capturer(model, source, options.layers, options.tokens, options.hook_modules)
        loss = loss_for_ingest(model, source, capturer, options.gradients, options.loss, options.mask_rate,
                               options.mask_seed)
        return cls(model, source, capturer, loss)


def checkpoint_refs(options: IngestOptions) -> list[CheckpointRef]:
    """The run's checkpoints: given as refs, resolved from paths and globs, or the model spec's own weights."""
    checkpoints = options.checkpoints
    given = [c if isinstance(c, CheckpointRef) else None for c in checkpoints or []] \
        if not isinstance(checkpoints, str) else []
    refs = list(checkpoints) if given and all(given) else (
        resolve_checkpoints(checkpoints, options.allow_duplicate_weights) if checkpoints
        else default_checkpoints(options.model_spec))
    if not refs:
        raise TgoError("no checkpoints given; pass --checkpoints with a glob or a list of files")
    return refs
