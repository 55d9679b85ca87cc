"""Token sequences held as arrays: the common part of text sources, and ``tokens:FILE.npz``.

``tokens:PATH.npz`` holds ``ids`` (N, S) int, ``attention_mask`` (N, S) bool, optional
``special`` (N, S) bool and ``labels`` (N,): already tokenised probe sequences (the live
``Recorder`` hands its text probe over in this form, as bytes: ``token_file_bytes``, ``token_source``).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import Batch, Positions, SourceOptions, TokenBatch, spans
from tgo_store.store import schema as S

PREFIX = "tokens:"


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's full serialised form (vocabulary, merges, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()


def tokenizer_attrs(tokenizer: Any) -> dict:
    return {"name": str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
            "vocab_size": len(tokenizer), "sha256": tokenizer_hash(tokenizer)}


class TokenSequences:
    """N sequences of S token ids with masks; yields TokenBatch inputs; labels every position."""

    def __init__(self, name: str, ids: np.ndarray, mask: np.ndarray, special: np.ndarray, sample_ids: np.ndarray,
                 labels: np.ndarray, vocab_size: int, tokenizer_attrs: dict, text_attrs: dict):
        self.name = name
        self._ids, self._mask = np.asarray(ids, np.int64), np.asarray(mask, bool)
        self._special = np.asarray(special, bool) & self._mask
        self.sample_ids, self.labels = np.asarray(sample_ids, np.int64), np.asarray(labels, np.int64)
        self.vocab_size = int(vocab_size)
        self._attrs = {S.ATTR_SCHEMA: S.TEXT_SCHEMA_VERSION, S.ATTR_TOKENIZER: tokenizer_attrs, S.ATTR_TEXT: text_attrs}
        self._fingerprint = hashlib.sha256(json.dumps(
            {"text": text_attrs, "tokenizer": tokenizer_attrs}, sort_keys=True).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._ids)

    def fingerprint(self) -> str:
        return self._fingerprint

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        for lo, hi in spans(len(self), batch_size, start, stop):
            inputs = TokenBatch(self._ids[lo:hi], self._mask[lo:hi], self._special[lo:hi])
            yield Batch(inputs, self.sample_ids[lo:hi], self.labels[lo:hi])

    def store_attrs(self) -> dict:
        return dict(self._attrs)

    def positions(self) -> Positions:
        token_id = np.where(self._mask, self._ids, -1).astype(np.int32)
        return Positions(token_id, self._mask.copy(), self._special.copy(), self.vocab_size)


def save_tokens(path: Any, batch: TokenBatch, labels: np.ndarray) -> None:
    """Write token sequences as a ``tokens:`` .npz (``path``: a file name or a binary file)."""
    np.savez(path, ids=np.asarray(batch.ids), attention_mask=np.asarray(batch.attention_mask),
             special=np.asarray(batch.special), labels=np.asarray(labels))


def token_file_bytes(batch: TokenBatch, labels: np.ndarray) -> bytes:
    """The bytes ``save_tokens`` writes, made in memory."""
    buffer = io.BytesIO()
    save_tokens(buffer, batch, labels)
    return buffer.getvalue()


class TokenFileEntry:
    name = "token-file"

    def can_open(self, spec: str) -> bool:
        return spec.startswith(PREFIX)

    def open(self, spec: str, options: SourceOptions) -> TokenSequences:

        url = spec[len(PREFIX):]
        try:
            with fsspec.open(url, "rb") as f:
                raw = f.read()
        except FileNotFoundError as exc:
            raise TgoError(f"token file {url} does not exist; pass an .npz with ids and attention_mask") from exc
        return token_source(spec, raw, options)


def token_source(spec: str, raw: bytes, options: SourceOptions) -> TokenSequences:
    """The token sequences of the bytes of a ``tokens:`` .npz; its corpus hash is those bytes' sha256."""
    url = spec[len(PREFIX):]
    data = np.load(io.BytesIO(raw), allow_pickle=False)
    if "ids" not in data or "attention_mask" not in data:
        raise TgoError(f"{url} needs 'ids' and 'attention_mask' arrays (found {sorted(data.files)})")
    ids, mask = data["ids"], data["attention_mask"].astype(bool)
    n, seq_len = ids.shape
    special = data["special"] if "special" in data else np.zeros(ids.shape, bool)
    labels = data["labels"] if "labels" in data else np.full(n, -1, np.int64)
    vocab = options.vocab_size or int(ids.max()) + 1
    if ids[mask].size and int(ids[mask].max()) >= vocab:
        raise TgoError(f"{url} holds token id {int(ids[mask].max())} but the model's vocabulary has {vocab}; "
                       "tokenise with the model's tokenizer")
    tok = tokenizer_attrs(options.tokenizer) if options.tokenizer is not None else {"name": "unknown",
                                                                                     "vocab_size": vocab}
    text = {"seq_len": int(seq_len), "packing": bool(mask.all()), "padding_side": "given", "corpus": url,
            "corpus_sha256": hashlib.sha256(raw).hexdigest(), "sequences": int(n)}
    return TokenSequences(spec, ids, mask, special, np.arange(n), labels, vocab, tok, text)
