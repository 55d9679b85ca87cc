"""Which positions a masked-LM store's model saw as the mask token (SPEC 5 ``token_masked``).

With ``--loss masked_lm`` the recorded activations and gradients are those of the masked
input: at a masked position the model saw the mask token, not ``token_id``. The draw is seeded
per (seed, sample id), so it is known before the first block is captured and is written once
with the other position coords; analyses that bucket positions by token (frequency) read the
id the model saw from it (``seen_token_ids``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgo_store.store import schema as S


def masked_draw(sample_ids: np.ndarray, length: int, seed: int | None, rate: float) -> np.ndarray:
    """(B, length) bool: the seeded candidates of each sample (before the valid/special filter)."""
    return np.stack([np.random.default_rng([int(seed or 0), int(s)]).random(length) < rate
                     for s in np.asarray(sample_ids)])


def write_masked_positions(group: Any, positions: Any, sample_ids: np.ndarray, loss: Any, mask_token_id: int,
                           token_indices: np.ndarray, samples_per_chunk: int) -> None:
    """Create the (sample, token) ``token_masked`` coord (attr ``mask_token_id``) of a masked-LM store."""
    draw = masked_draw(sample_ids, positions.attention_mask.shape[1], loss.seed, float(loss.mask_rate))
    masked = draw & positions.attention_mask.astype(bool) & ~positions.special.astype(bool)
    values = masked[:, np.asarray(token_indices, np.int64)]
    arr = group.create_array(S.TOKEN_MASKED, shape=values.shape, dtype=bool, fill_value=False, overwrite=True,
                             chunks=(max(1, min(samples_per_chunk, len(values))), max(1, values.shape[1])),
                             dimension_names=[S.SAMPLE, S.TOKEN])
    arr[:] = values
    arr.attrs["mask_token_id"] = int(mask_token_id)
    arr.attrs["long_name"] = "the model saw the mask token here (masked LM), not token_id"
    act = group[S.ACTIVATIONS]
    listed = str(act.attrs.get("coordinates", "")).split()
    act.attrs["coordinates"] = " ".join([*listed, S.TOKEN_MASKED])


def seen_token_ids(ds: Any) -> np.ndarray | None:
    """(sample, token) ids the model saw: ``token_id`` with the mask token at masked positions;
    None for a store without ``token_masked`` (the model saw ``token_id`` everywhere)."""
    if S.TOKEN_MASKED not in ds.variables or S.TOKEN_ID not in ds.variables:
        return None
    masked = np.asarray(ds[S.TOKEN_MASKED].values, dtype=bool)
    return np.where(masked, int(ds[S.TOKEN_MASKED].attrs["mask_token_id"]), np.asarray(ds[S.TOKEN_ID].values))
