"""What a data source is, what it yields, and what it may ask of the model.

Every source yields the same samples in the same order on every call and can start at any
sample, so that each (checkpoint, sample block) of a store can be (re)computed on its own.
Sources are torch-free: images are float32 NCHW arrays already prepared for the model, text
is token ids already cut to the sequence length. A source plug-in (``SourceEntry``) says
whether it opens a spec string and opens it; ``tgo_store.sources.registry`` asks them in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tgo_store.errors import TgoError


@dataclass(frozen=True)
class TokenBatch:
    """Token sequences: ids (B, S) int64, attention_mask (B, S) bool (false at padding) and
    special (B, S) bool (BOS/EOS/CLS/SEP...). Numpy from a source; a capturer's ``prepare``
    returns the same record holding device tensors."""

    ids: Any
    attention_mask: Any
    special: Any

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, rows: slice) -> TokenBatch:
        """The sequences of a row slice (numpy or torch alike)."""
        return TokenBatch(self.ids[rows], self.attention_mask[rows], self.special[rows])


@dataclass(frozen=True)
class Batch:
    """One batch of model inputs with the dataset index and label of each."""

    inputs: np.ndarray | TokenBatch  # images: (B, C, H, W) float32; text: a TokenBatch
    sample_ids: np.ndarray  # (B,) int64
    labels: np.ndarray  # (B,) int64, -1 when none


@dataclass(frozen=True)
class Positions:
    """Per (sample, position) labels of a text source, for the store's 2-D coordinates."""

    token_id: np.ndarray  # (N, S) int32, -1 at padding
    attention_mask: np.ndarray  # (N, S) bool
    special: np.ndarray  # (N, S) bool
    vocab_size: int


@dataclass(frozen=True)
class SourceOptions:
    """Everything a source may need: the model's input format and the user's data options.

    Image sources read the image fields; text sources read the tokenizer and the text fields.
    """

    image_size: int = 224
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    tokenizer: Any = None  # a transformers tokenizer (text sources)
    max_length: int | None = None  # the model's maximum sequence length
    vocab_size: int | None = None  # rows of the model's embedding matrix
    seq_len: int | None = None  # tokens per sequence (text)
    padding: str | None = None  # None: pack documents; "left" / "right": one padded document per sequence
    samples: int | None = None  # keep at most this many sequences (a seeded subset)
    seed: int = 0

    @classmethod
    def of(cls, **values: Any) -> SourceOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TgoError(f"unknown data option(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")
        return cls(**{k: (tuple(v) if k in ("mean", "std") else v) for k, v in values.items() if v is not None})


@runtime_checkable
class DataSource(Protocol):
    """What ingest needs from a dataset."""

    name: str
    sample_ids: np.ndarray  # (N,) int64: the `sample` coordinate
    labels: np.ndarray  # (N,) int64: the `label` coordinate, -1 when none

    def __len__(self) -> int: ...

    def fingerprint(self) -> str: ...

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]: ...

    def store_attrs(self) -> dict:
        """Group attributes this source adds to a store (text: tokenizer and text settings)."""
        ...

    def positions(self) -> Positions | None:
        """Per-position labels (text), or None (images)."""
        ...


class SourceEntry(Protocol):
    """A registry entry: which specs it opens and how."""

    name: str

    def can_open(self, spec: str) -> bool: ...

    def open(self, spec: str, options: SourceOptions) -> DataSource: ...


class PlainSource:
    """Defaults for sources without store attributes or per-position labels (images)."""

    def store_attrs(self) -> dict:
        return {}

    def positions(self) -> Positions | None:
        return None


def spans(n: int, batch_size: int, start: int, stop: int | None) -> Iterator[tuple[int, int]]:
    """[lo, hi) batch bounds over samples [start, stop)."""
    stop = n if stop is None else min(stop, n)
    for lo in range(start, stop, batch_size):
        yield lo, min(lo + batch_size, stop)


def scheme(spec: str) -> str | None:
    """``text`` for ``text:pydoc``; None for paths and fsspec URLs (``s3://...``)."""
    head = spec.split("/")[0]
    return head.split(":")[0] if ":" in head and "://" not in spec else None


def per_channel(values: Sequence[float], channels: int) -> list[float]:
    values = list(values)
    return values if len(values) == channels else [float(np.mean(values))] * channels
