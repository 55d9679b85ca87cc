"""Which samples a per-token statistic may read: ``attention_mask`` true (SPEC 5).

Padding holds whatever the model wrote there; no per-position reduction may see it. For
token t a per-token statistic uses the samples valid at t. ``partial_mask`` is None when the
block has no mask or every position of it is valid, so those blocks keep the unmasked fast
path (and its results bit for bit).
"""

from __future__ import annotations

import numpy as np

from tgo_analysis.statistics.base import Block


def partial_mask(block: Block) -> np.ndarray | None:
    """(samples, tokens) bool validity of the block, or None when every position is valid."""
    if block.attention_mask is None:
        return None
    valid = np.asarray(block.attention_mask, dtype=bool)
    return None if valid.all() else valid


MASK_ATTR = "per-position reductions use only positions with attention_mask true; for token t, the samples valid at t"
