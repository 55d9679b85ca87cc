"""Gradient precision (SPEC 5): the stored dtype of ``gradients`` and what it loses.

Gradients are small and shrink as training converges: at ‖g‖ ≈ 1e-6 float16 flushes about a
third of the entries to zero or subnormals, and those lost entries bias every energy share
toward isotropy. So gradients are stored in float32 unless asked otherwise, and the store
records per (checkpoint, layer) ``gradient_zero_fraction``: the share of stored gradient
entries that are zero or subnormal in the stored dtype, over the positions the loss reaches.

Some positions have an exactly zero gradient by construction, not by precision: padding, and a
causal LM's last position (it predicts nothing and nothing after it reads it: 1/T of a store's
entries, 1.6 % at T = 64, enough to trip the warning on every such store). In float32 a whole
row of zeros can only be such a position (underflow would need ‖g‖ below 1e-38), so float32
stores count entries over rows that are not all zero. In float16 a whole row can underflow,
so every row counts there, and those positions stay in the count.

Each written block puts its per-layer counts in its commit record (``block_counts``), which is
atomic and written only once the block's shards are durable, so the fraction is recomputed from
the commit records after every ingest (``record_zero_fraction``): a resumed ingest neither
loses nor doubles a block.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from tgo_store.errors import TgoError
from tgo_store.store import schema as S

GRADIENT_DTYPES = ("float16", "float32")
DEFAULT_GRADIENT_DTYPE = "float32"
WARN_FRACTION = 0.01  # above this share of lost entries, ingest warns
UNDERFLOW_KEY, ENTRIES_KEY = "gradient_underflow", "gradient_entries"  # commit record fields


def check_gradient_dtype(dtype: str | None, existing: str | None = None) -> str:
    """The gradient dtype to store: the one asked for, else the existing store's, else float32.

    TgoError when it is not a storage dtype or differs from the existing gradients' dtype.
    """
    if dtype is not None and dtype not in GRADIENT_DTYPES:
        raise TgoError(f"unknown --gradient-dtype {dtype}; use {' or '.join(GRADIENT_DTYPES)}")
    if existing is not None and dtype is not None and dtype != existing:
        raise TgoError(f"the store's gradients are {existing}, not {dtype}; pass --gradient-dtype {existing} "
                       "or ingest into a new store")
    return dtype or existing or DEFAULT_GRADIENT_DTYPE


def stored_gradient_dtype(group: Any) -> str | None:
    """The dtype of an existing store's ``gradients`` array (None without one)."""
    return str(np.dtype(group[S.GRADIENTS].dtype)) if group is not None and S.GRADIENTS in group else None


def reached_rows(values: np.ndarray) -> np.ndarray:
    """(L, n, T) positions that count: in float32 the rows not all zero (the loss reaches them);
    in float16 every row, since a whole row can be underflow there (see the module docstring)."""
    values = np.asarray(values)
    if values.dtype != np.float32:
        return np.ones(values.shape[:-1], bool)
    return np.any(values != 0, axis=-1)


def underflow_counts(values: np.ndarray, reached: np.ndarray | None = None) -> np.ndarray:
    """(L,) entries of a gradient block (L, n, T, D) that are zero or subnormal in its dtype,
    within the ``reached`` rows (L, n, T) when given."""
    values = np.asarray(values)
    lost = np.abs(values) < np.finfo(values.dtype).tiny  # below the smallest normal number
    if reached is not None:
        lost &= reached[..., None]
    return np.count_nonzero(lost, axis=tuple(range(1, values.ndim)))


def block_counts(values: np.ndarray | None) -> dict[str, list[int]]:
    """The commit record fields of one gradient block: lost entries and entries, per layer."""
    if values is None:
        return {}
    values = np.asarray(values)
    reached = reached_rows(values)
    rows = reached.reshape(values.shape[0], -1).sum(axis=1)
    return {UNDERFLOW_KEY: [int(c) for c in underflow_counts(values, reached)],
            ENTRIES_KEY: [int(r) * values.shape[-1] for r in rows]}


def create_zero_fraction(group: Any, n_layers: int) -> None:
    """The empty (checkpoint, layer) float64 variable, beside an empty gradients array."""
    arr = group.create_array(S.GRADIENT_ZERO_FRACTION, shape=(0, n_layers), chunks=(1024, max(n_layers, 1)),
                             dtype="float64", fill_value=np.nan, dimension_names=[S.CHECKPOINT, S.LAYER])
    arr.attrs["long_name"] = ("share of stored gradient entries that are zero or subnormal in the stored dtype "
                              "(abs < finfo.tiny), over the positions the loss reaches (float32: rows not all zero)")


def resize_zero_fraction(group: Any, n_checkpoints: int) -> None:
    """Grow the variable with the checkpoint dim (no-op for stores without it)."""
    if S.GRADIENT_ZERO_FRACTION in group:
        arr = group[S.GRADIENT_ZERO_FRACTION]
        arr.resize((n_checkpoints, arr.shape[1]))


def zero_fractions(commits: dict[tuple[int, int], dict], shape: tuple[int, int]) -> np.ndarray:
    """(checkpoint, layer) share of lost entries over the committed blocks (NaN without any)."""
    lost, total = np.zeros(shape), np.zeros(shape)
    for (ci, _), record in commits.items():
        if ci < shape[0] and UNDERFLOW_KEY in record and ENTRIES_KEY in record:
            lost[ci] += np.asarray(record[UNDERFLOW_KEY], dtype=np.float64)
            total[ci] += np.asarray(record[ENTRIES_KEY], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, lost / total, np.nan)


def record_zero_fraction(url: str, storage_options: dict | None = None, warn: bool = True) -> np.ndarray | None:
    """Write ``gradient_zero_fraction`` from the commit records; warn in one line above 1 %.

    Only the variable's values change (its shape follows the checkpoint dim already), so the
    consolidated metadata stays valid. Returns the fractions (None for a store without gradients).
    """
    import zarr

    from tgo_store.store.commits import read_commits
    from tgo_store.store.location import open_zarr_store, store_records

    group = zarr.open_group(open_zarr_store(url, storage_options=storage_options), mode="r+")
    if S.GRADIENT_ZERO_FRACTION not in group:
        return None
    arr = group[S.GRADIENT_ZERO_FRACTION]
    fractions = zero_fractions(read_commits(store_records(url, storage_options)), tuple(arr.shape))
    if arr.size:
        arr[...] = fractions
    if warn:
        warn_underflow(fractions, stored_gradient_dtype(group) or "?")
    return fractions


def warn_underflow(fractions: np.ndarray, dtype: str) -> str | None:
    """One stderr line when some (checkpoint, layer) lost more than 1 % of its gradient entries."""
    if not np.isfinite(fractions).any() or np.nanmax(fractions) <= WARN_FRACTION:
        return None
    ci, li = np.unravel_index(np.nanargmax(fractions), fractions.shape)
    line = (f"warning: {100 * np.nanmax(fractions):.1f} % of the stored {dtype} gradient entries are zero or "
            f"subnormal (checkpoint index {ci}, layer index {li}; gradient_zero_fraction); energy shares lean "
            f"toward isotropy{': re-ingest with --gradient-dtype float32' if dtype == 'float16' else ''}")
    print(line, file=sys.stderr)
    return line
