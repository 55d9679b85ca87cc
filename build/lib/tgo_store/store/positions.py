"""Per-position labels of text stores (SPEC section 5): token_id, attention_mask, token_special
over (sample, token), and vocab_count over (vocab).

They are written once, with the store's other coordinates, when the store is created: a
text source knows every sequence before the first block is captured, so the labels never
depend on which blocks a killed run finished, and a resumed run ends bit-identical.
``vocab_count`` counts every valid (attention mask true) position of the captured tokens of
all samples: the positions the store holds once every block is written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgo_store.sources.base import Positions
from tgo_store.store import schema as S


def vocab_count(token_id: np.ndarray, attention_mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """Occurrences of each id over the valid positions, int64 of length vocab_size."""
    ids = token_id[attention_mask].astype(np.int64)
    return np.bincount(ids, minlength=vocab_size).astype(np.int64)


def write_positions(group: Any, positions: Positions, token_indices: np.ndarray, samples_per_chunk: int) -> None:
    """Create the 2-D position coords and vocab_count, and list the coords on the activations."""
    index = np.asarray(token_indices, np.int64)
    values = {S.TOKEN_ID: positions.token_id[:, index].astype(np.int32),
              S.ATTENTION_MASK: positions.attention_mask[:, index].astype(bool),
              S.TOKEN_SPECIAL: positions.special[:, index].astype(bool)}
    for name, array in values.items():
        arr = group.create_array(name, shape=array.shape, chunks=(max(1, min(samples_per_chunk, len(array))),
                                                                  max(1, array.shape[1])),
                                 dtype=array.dtype, dimension_names=[S.SAMPLE, S.TOKEN], overwrite=True,
                                 fill_value=-1 if name == S.TOKEN_ID else False)
        arr[:] = array
    counts = vocab_count(values[S.TOKEN_ID], values[S.ATTENTION_MASK], positions.vocab_size)
    arr = group.create_array(S.VOCAB_COUNT, shape=counts.shape, chunks=counts.shape, dtype=np.int64,
                             dimension_names=[S.VOCAB], overwrite=True, fill_value=0)
    arr[:] = counts
    act = group[S.ACTIVATIONS]
    act.attrs["coordinates"] = " ".join([*S.COORDS, *S.POSITION_COORDS])
