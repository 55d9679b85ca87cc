"""Which (sample, token) positions enter a per-position computation: one rule for analysis and
the training loader (``tgo_store.loader``), so that both see the same positions.

Padding (``attention_mask`` false) never enters. Special tokens and the first valid position
of each sequence enter unless excluded: decoders put massive activations on the first
position, so pooled analyses and probes/SAEs trained on a store can leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PositionChoice:
    """Which valid positions are pooled; padding (attention_mask false) never is."""

    exclude_special: bool = False
    exclude_first: bool = False

    def describe(self) -> str:
        """One line for result attrs: what entered the pool."""
        left = [name for name, on in (("special tokens", self.exclude_special),
                                      ("the first position of each sequence", self.exclude_first)) if on]
        kept = "every valid position (attention_mask true)"
        return kept + (", except " + " and ".join(left) if left else ", special tokens and first positions included")

    def attrs(self) -> dict[str, object]:
        return {"pooled_positions": self.describe(), "pooled_exclude_special": self.exclude_special,
                "pooled_exclude_first": self.exclude_first,
                "pooled_default": "special tokens and first positions included, as in Razzhigaev et al. "
                                  "(llm-microscope, all positions of the tokenized text) and Ethayarajh 2019"}


def valid_positions(shape: tuple[int, int], attention_mask: np.ndarray | None = None,
                    token_special: np.ndarray | None = None,
                    choice: PositionChoice = PositionChoice()) -> np.ndarray:
    """(sample, token) bool: the positions that enter the pool; no mask (image stores) = all valid.

    "First position" is the first valid position of each row, so a left-padded sequence drops
    its first real token, not a padding slot.
    """
    valid = np.ones(shape, dtype=bool) if attention_mask is None else np.asarray(attention_mask, dtype=bool).copy()
    if choice.exclude_special and token_special is not None:
        valid &= ~np.asarray(token_special, dtype=bool)
    if choice.exclude_first:
        base = np.ones(shape, dtype=bool) if attention_mask is None else np.asarray(attention_mask, dtype=bool)
        rows = np.flatnonzero(base.any(axis=1))
        valid[rows, base[rows].argmax(axis=1)] = False
    return valid
