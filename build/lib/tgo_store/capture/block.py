"""Capturing one block: input batches -> a host block (layer, sample, token, feature), checked.

``capture_block`` is the one block loop of capture: the ingest runner, the live ``Recorder``
and the one-batch checkpoint probe all fill their blocks through it (with gradients:
``losses.capture_gradient_block``, the same loop with one backward pass per batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tgo_store.capture.checkpoints import CheckpointRef, load_checkpoint_into
from tgo_store.capture.transfer import BlockFiller, NonFiniteActivations
from tgo_store.errors import TgoError
from tgo_store.sources import DataSource

PROBE_SAMPLES = 16  # samples of the one batch each new checkpoint runs before the store is touched


def capture_block(filler: BlockFiller, capturer: Any, batches: Iterable[Any], n_samples: int, source: str,
                  samples: str) -> np.ndarray:
    """Fill one block (layer, sample, token, feature) from input batches; TgoError on NaN/Inf."""
    shape = (len(capturer.layer_indices), n_samples, len(capturer.token_indices), capturer.feature_dim)
    filler.start(shape)
    offset = 0
    try:
        for inputs in batches:
            filler.add(capturer.parts(inputs), offset)
            offset += len(inputs)
        return filler.finish()
    except NonFiniteActivations as exc:
        names = [capturer.layer_names[i] for i in exc.layers]
        raise TgoError(
            f"{source} gives NaN/Inf activations (or values beyond {filler.dtype}) at {', '.join(names[:3])} "
            f"in {samples}; nothing of this block was stored: fix the model, drop the checkpoint, or use --dtype float32"
        ) from None
    finally:
        filler.abandon()


def probe_checkpoints(model: Any, source: DataSource, capturer: Any, refs: Sequence[CheckpointRef], dtype: str,
                       precision: str) -> None:
    """Load each new checkpoint, match it to the model and run one batch, before the store is touched.

    A refused checkpoint (no tensors, another architecture, NaN/Inf or float16-overflowing
    activations) then leaves an existing store byte for byte as it was.
    """
    if not refs:
        return
    import torch

    n = min(PROBE_SAMPLES, len(source))
    inputs = capturer.prepare(next(source.batches(n, 0, n)).inputs, "cpu", getattr(torch, precision))
    model.to(getattr(torch, precision))
    filler = BlockFiller("cpu", dtype)
    for ref in refs:
        load_checkpoint_into(model, ref)
        data = capture_block(filler, capturer, [inputs], n, f"checkpoint {ref.url}", f"samples 0-{n - 1}")
        filler.pool.release(data)
