"""What the loader reads: one layer of a store, its pieces and their valid positions.

A piece is one (checkpoint, sample block) of the chosen layer: the store's shard (see
``tgo_store.store.layout``), the unit a reader fetches whole. Which positions of a piece count is
``tgo_store.store.validity.valid_positions`` (the rule analysis uses), restricted to the chosen
tokens; positions are numbered sample-major inside a piece, so a range of them is a range of
sample rows. Bad choices (unknown layer, incomplete checkpoint, exclusions the store cannot
honour) are refused here in one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from tgo_store.errors import TgoError
from tgo_store.store import schema as S
from tgo_store.store.validity import PositionChoice, valid_positions

DEFAULT_BLOCK = 1024  # samples per piece for a dataset that declares neither shards nor chunks


@dataclass(frozen=True)
class Piece:
    """One (checkpoint, sample block) of the layer: samples [start, stop) of checkpoint index ``checkpoint``."""

    checkpoint: int
    block: int
    start: int
    stop: int


@dataclass
class Part:
    """Positions [lo, hi) (sample-major valid positions) of one piece, read into a window."""

    piece: int
    lo: int
    hi: int


def _store_url(store: Any) -> str | None:
    return os.fspath(store) if isinstance(store, (str, os.PathLike)) else None


def _block_size(ds: xr.Dataset, act: xr.DataArray) -> int:
    """Samples per piece: the store's block (tgo layout), else its shards or chunks along sample."""
    layout = ds.attrs.get("tgo_layout") or {}
    if "samples_per_block" in layout:
        return int(layout["samples_per_block"])
    for key in ("shards", "chunks", "preferred_chunks"):
        shape = act.encoding.get(key)
        if isinstance(shape, dict):
            shape = [shape.get(S.SAMPLE)]
        if shape and shape[2 if len(shape) == 5 else 0]:
            return int(shape[2 if len(shape) == 5 else 0])
    if act.chunks:
        return int(act.chunks[2][0])
    return DEFAULT_BLOCK


def _indices(value: Any, size: int, what: str, fix: str) -> np.ndarray:
    """Indices along a dim from an int, slice or sequence (negative allowed), checked."""
    if isinstance(value, slice):
        return np.arange(size)[value]
    values = np.atleast_1d(np.asarray(value, dtype=np.int64))
    bad = values[(values >= size) | (values < -size)]
    if values.size == 0 or bad.size:
        shown = int(bad[0]) if bad.size else "none"
        raise TgoError(f"{what} {shown} is not in this store ({size} along that dim); {fix}")
    return np.unique(np.where(values < 0, values + size, values))


def store_labels(ds: xr.Dataset) -> np.ndarray | None:
    """The sample labels, or None where the store has none: no `label` coord, or every label -1
    (SPEC 1: -1 is "no label", what text stores hold), so batches and exports carry no empty column."""
    if S.LABEL not in ds.coords:
        return None
    labels = ds[S.LABEL].values.astype(np.int64)
    return labels if (labels >= 0).any() else None


class LayerSource:
    """The selected positions of one layer over one or several complete checkpoints."""

    def __init__(self, store: Any, layer: int, checkpoints: Sequence[int] | int, tokens: Any,
                 choice: PositionChoice, storage_options: dict | None = None, samples: Any = None) -> None:
        from tgo_store.store.open import open_store

        self.url = _store_url(store)
        self.storage_options = storage_options
        ds = store if isinstance(store, xr.Dataset) else open_store(self.url, storage_options=storage_options,
                                                                    chunks=None)
        act = S.validate_activations(ds)
        self.dataset = ds
        self.where = self.url or "the dataset"
        n_ckpt, n_layer, self.n_samples, self.n_tokens, self.n_features = act.shape
        layers = ds[S.LAYER].values if S.LAYER in ds.coords else np.arange(n_layer)
        if int(layer) not in set(layers.tolist()):
            raise TgoError(f"layer {layer} is not in {self.where} (layers: {', '.join(map(str, layers.tolist()))}); "
                           "pass one of those")
        self.layer = int(layer)
        self.layer_index = int(np.flatnonzero(layers == int(layer))[0])
        self.checkpoints = _indices(checkpoints, n_ckpt, "checkpoint index", f"pass an index in [-{n_ckpt}, {n_ckpt})")
        self.steps = (ds[S.CHECKPOINT].values if S.CHECKPOINT in ds.coords else np.arange(n_ckpt)).astype(np.int64)
        self._refuse_incomplete()
        self.tokens = _indices(slice(None) if tokens is None else tokens, self.n_tokens, "token index",
                               f"pass token indices in [0, {self.n_tokens})")
        self.choice = choice
        self._check_choice(ds)
        self.chosen_samples = None
        if samples is not None:  # a train / held-out split: sample indices (positions along the dim)
            self.chosen_samples = np.zeros(self.n_samples, dtype=bool)
            self.chosen_samples[_indices(samples, self.n_samples, "sample index",
                                         f"pass sample indices in [0, {self.n_samples})")] = True
        self.dtype = np.dtype(act.dtype)
        self.sample_values = (ds[S.SAMPLE].values if S.SAMPLE in ds.coords else np.arange(self.n_samples)).astype(np.int64)
        self.token_values = (ds[S.TOKEN].values if S.TOKEN in ds.coords else np.arange(self.n_tokens)).astype(np.int64)
        self.labels = store_labels(ds)
        self.has_token_id = S.TOKEN_ID in ds
        self.block = max(1, _block_size(ds, act))
        n_blocks = math.ceil(self.n_samples / self.block)
        self.block_counts = np.array([int(self.valid(b).sum()) for b in range(n_blocks)], dtype=np.int64)
        self.pieces = [Piece(int(c), b, b * self.block, min((b + 1) * self.block, self.n_samples))
                       for c in self.checkpoints for b in range(n_blocks)]
        self.counts = np.tile(self.block_counts, len(self.checkpoints))
        self._array: Any = None

    # -- checks -------------------------------------------------------------------------------
    def _refuse_incomplete(self) -> None:
        if self.url is None or S.ATTR_SCHEMA not in self.dataset.attrs:
            return  # a dataset tgo did not write has no commit records (as in complete_dataset)
        from tgo_store.store.info import store_info
        from tgo_store.store.verify import refuse_damage

        facts = store_info(self.url, storage_options=self.storage_options)
        refuse_damage(self.url, facts.damage)
        complete = set(facts.complete_checkpoints())
        for c in self.checkpoints:
            if int(c) not in complete:
                row = facts.checkpoints[int(c)]
                state = (f"was refused ({row['failed']})" if row.get("failed")
                         else f"has {row['blocks_done']}/{facts.blocks_per_checkpoint} blocks written")
                raise TgoError(f"checkpoint {int(c)} (step {row['step']}) of {self.url} {state}; finish it with the "
                               f"`tgo ingest` that wrote it (see `tgo info {self.url}`) or choose a complete "
                               f"checkpoint ({', '.join(map(str, sorted(complete))) or 'none yet'})")

    def _check_choice(self, ds: xr.Dataset) -> None:
        if self.choice.exclude_special and S.TOKEN_SPECIAL not in ds:
            raise TgoError(f"exclude_special needs the '{S.TOKEN_SPECIAL}' coord, which {self.where} does not have "
                           "(image stores mark no special tokens); drop exclude_special or use tokens= to pick tokens")

    # -- positions ----------------------------------------------------------------------------
    def _rows(self, name: str, start: int, stop: int) -> np.ndarray | None:
        return np.asarray(self.dataset[name][start:stop].values) if name in self.dataset else None

    def valid(self, block: int) -> np.ndarray:
        """(samples of the block, chosen tokens) bool: the positions that enter."""
        start, stop = block * self.block, min((block + 1) * self.block, self.n_samples)
        valid = valid_positions((stop - start, self.n_tokens), self._rows(S.ATTENTION_MASK, start, stop),
                                self._rows(S.TOKEN_SPECIAL, start, stop), self.choice)
        if self.chosen_samples is not None:
            valid &= self.chosen_samples[start:stop, None]
        return valid[:, self.tokens]

    # -- values -------------------------------------------------------------------------------
    def array(self) -> Any:
        """The activations array (zarr for a URL, opened once per process; xarray for a dataset)."""
        if self._array is None:
            if self.url is None:
                self._array = self.dataset[S.ACTIVATIONS]
            else:
                import zarr

                from tgo_store.store.location import fast_codecs, open_zarr_store

                with fast_codecs(self.url):
                    store = open_zarr_store(self.url, read_only=True, storage_options=self.storage_options)
                    self._array = zarr.open_array(store, path=S.ACTIVATIONS, mode="r")
        return self._array

    def read_rows(self, checkpoint: int, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the layer at one checkpoint, the span of the chosen tokens (store dtype)."""
        from tgo_store.store.integrity import checked_read, rows_name

        t0, t1 = int(self.tokens[0]), int(self.tokens[-1]) + 1
        array = self.array()
        region = (checkpoint, self.layer_index, slice(start, stop), slice(t0, t1))
        return checked_read(lambda: array[region].values if isinstance(array, xr.DataArray) else array[region],
                            lambda: rows_name(checkpoint, self.layer_index, start, stop, self.block, self.url), self.url)

    def read_part(self, part: Part, out: dict[str, np.ndarray], offset: int) -> None:
        """Read positions [lo, hi) of a piece into ``out[...][offset:offset + hi - lo]`` (no extra window copy)."""
        piece = self.pieces[part.piece]
        if part.hi <= part.lo:
            return
        flat = np.flatnonzero(self.valid(piece.block))[part.lo:part.hi]
        rows, cols = np.divmod(flat, self.tokens.size)
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        x = self.read_rows(piece.checkpoint, piece.start + r0, piece.start + r1)
        span = slice(offset, offset + flat.size)
        token_index = self.tokens[cols]
        if self.tokens.size == x.shape[1]:  # contiguous tokens: gather rows straight into the window, no temporary
            np.take(x.reshape(-1, self.n_features), flat - r0 * self.tokens.size, axis=0,
                    out=out["activations"][span])
        else:
            out["activations"][span] = x[rows - r0, token_index - int(self.tokens[0])]
        del x
        out["sample"][span] = self.sample_values[piece.start + rows]
        out["token"][span] = self.token_values[token_index]
        if "checkpoint" in out:
            out["checkpoint"][span] = self.steps[piece.checkpoint]
        if "label" in out:
            out["label"][span] = self.labels[piece.start + rows]
        if "token_id" in out:
            ids = self._rows(S.TOKEN_ID, piece.start + r0, piece.start + r1)
            out["token_id"][span] = ids[rows - r0, token_index]

    def fields(self, several_checkpoints: bool) -> dict[str, np.dtype]:
        """The batch keys this layer fills and their dtypes (activations in the store dtype)."""
        keys = {"activations": self.dtype, "sample": np.dtype(np.int64), "token": np.dtype(np.int64)}
        if self.has_token_id:
            keys["token_id"] = np.dtype(np.int64)
        if self.labels is not None:
            keys["label"] = np.dtype(np.int64)
        if several_checkpoints:
            keys["checkpoint"] = np.dtype(np.int64)
        return keys

    def bytes_per_position(self, several_checkpoints: bool) -> int:
        return sum(self.n_features * d.itemsize if k == "activations" else d.itemsize
                   for k, d in self.fields(several_checkpoints).items())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # reopened in the process that reads (DataLoader workers)
        return state
